"""The built-in presets ship inside the package: a regular (non-editable) install finds them from
any directory. Built as a wheel, installed into a temporary folder, run with `python -S` so the
editable install of the checkout (a .pth finder in site-packages) cannot stand in for it."""

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_presets_and_runs_from_any_directory(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
    )
    wheel = next(wheels.glob("llmcalc-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".yaml")}
    expected = {f"llmcalc/presets_data/{p.name}" for p in (REPO / "presets").glob("*.yaml")}
    assert shipped == expected
    packages = {
        f"llmcalc/{d.relative_to(REPO / 'llmcalc')}/__init__.py"
        for d in (REPO / "llmcalc").rglob("*")
        if (d / "__init__.py").is_file()
    }
    assert packages <= set(zipfile.ZipFile(wheel).namelist())  # every sub-package ships

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys, llmcalc; assert llmcalc.__file__.startswith(sys.argv[1]), llmcalc.__file__; "
        "from llmcalc.cli import main; sys.argv = ['llmcalc', 'params', 'gpt2', '--json']; main()"
    )
    path = f"{target}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(target)],
        cwd=elsewhere,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"] == 124_439_808

"""`llmcalc sweep`: the product of the varied values, each point equal to the single-model
figures, the terminal chart, the PNG through the plot extra, and bad input."""

import json
import struct
import sys
import time

import pytest

from llmcalc.cli import app


def _json(runner, *args):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_points_are_the_product_and_match_memory(runner):
    data = _json(
        runner, "sweep", "llama-2-7b", "--vary", "n_kv_heads=1,8", "--vary", "seq=512,2048"
    )
    assert [p["values"] for p in data["points"]] == [
        {"n_kv_heads": 1, "seq": 512},
        {"n_kv_heads": 1, "seq": 2048},
        {"n_kv_heads": 8, "seq": 512},
        {"n_kv_heads": 8, "seq": 2048},
    ]
    for point in data["points"]:
        values = point["values"]
        memory = _json(
            runner,
            "memory",
            "llama-2-7b",
            "--gqa",
            str(values["n_kv_heads"]),
            "--seq",
            str(values["seq"]),
        )
        assert point["metrics"]["kv_cache_bytes"] == memory["kv_cache_bytes"]
        assert point["metrics"]["training_peak"] == memory["training"]["peak"]
        assert sum(point["training_breakdown"].values()) == memory["training"]["peak"]


def test_batch_and_a_config_field_together(runner):
    data = _json(
        runner, "sweep", "gpt2", "--vary", "batch=1,4", "--vary", "n_layers=2,4", "--seq", "256"
    )
    peaks = {
        (p["values"]["batch"], p["values"]["n_layers"]): p["metrics"]["training_peak"]
        for p in data["points"]
    }
    assert peaks[(4, 4)] > peaks[(1, 4)] > peaks[(1, 2)]


def test_terminal_chart_has_a_bar_per_point(runner):
    result = runner.invoke(
        app, ["sweep", "gpt2", "--vary", "seq=128,1024", "--metrics", "training_peak"]
    )
    assert result.exit_code == 0
    bars = [line for line in result.stdout.splitlines() if line.startswith("seq=") and "█" in line]
    assert len(bars) == 2
    assert len(bars[1]) > len(bars[0])  # the longer sequence needs more memory: a longer bar


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_plot_writes_a_png(runner, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep.png"
    result = runner.invoke(app, ["sweep", "gpt2", "--vary", "seq=128,512,1024", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    width, height = _png_size(out)
    assert width >= 400 and height >= 300
    assert out.stat().st_size > 5_000


def _error(runner, *args):
    result = runner.invoke(app, ["sweep", "gpt2", *args])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    return lines[0]


def test_bad_sweep_input(runner, tmp_path):
    assert "unknown field 'n_layer'; did you mean 'n_layers'" in _error(
        runner, "--vary", "n_layer=1,2"
    )
    assert "expected field=v1,v2" in _error(runner, "--vary", "seq")
    assert "seq values must be positive integers" in _error(runner, "--vary", "seq=128,abc")
    assert "'n_kv_heads' = 5" in _error(runner, "--vary", "n_kv_heads=5")
    assert "--metrics 'speed'" in _error(runner, "--vary", "seq=128", "--metrics", "speed")
    missing = tmp_path / "nope" / "out.png"
    assert "does not exist" in _error(runner, "--vary", "seq=128", "--plot", str(missing))
    assert ".png or .svg" in _error(
        runner, "--vary", "seq=128", "--plot", str(tmp_path / "out.jpg")
    )


def test_plot_without_matplotlib_names_the_extra(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    line = _error(runner, "--vary", "seq=128", "--plot", str(tmp_path / "out.png"))
    assert "pip install 'llmcalc[plot]'" in line


def test_messages_say_what_happened(runner):
    assert "'n_layers=,,': no values; give one or more" in _error(runner, "--vary", "n_layers=,,")
    line = _error(runner, "--vary", "name=a,b")
    assert "'name' labels the model and changes no figure" in line and "did you mean" not in line
    # the point is named by --vary; --set only when it was given
    line = _error(runner, "--vary", "d_model=512,768")
    assert line.startswith("Error: gpt2 with --vary d_model=512: d_model = 512 is not divisible")
    line = _error(runner, "--vary", "d_model=512", "--set", "n_layers=2")
    assert line.startswith("Error: gpt2 (with --set) with --vary d_model=512: ")
    assert "positive integers up to 10**30; got 0" in _error(runner, "--vary", "batch=1,0")


def test_a_sweep_past_max_points_is_refused_before_any_output(runner):
    values = [",".join(str(v) for v in range(1, n + 1)) for n in (30, 40, 45)]
    args = ["--vary", f"n_layers={values[0]}", "--vary", f"d_ff={values[1]}"]
    args += ["--vary", f"seq={values[2]}"]
    start = time.perf_counter()
    line = _error(runner, *args)
    assert "a sweep of 54,000 points (30 × 40 × 45) is more than --max-points 1,000" in line
    assert time.perf_counter() - start < 2
    small = runner.invoke(app, ["sweep", "gpt2", "--vary", "n_layers=1,2,3", "--max-points", "2"])
    assert small.exit_code == 2 and small.stdout == ""
    raised = ["sweep", "gpt2", "--vary", "n_layers=1,2,3", "--max-points", "3", "--json"]
    assert len(json.loads(runner.invoke(app, raised).stdout)["points"]) == 3


def test_a_billion_layers_is_a_point_like_any_other(runner):
    data = _json(runner, "sweep", "gpt2", "--vary", "n_layers=12,1000000000")
    small, big = (p["metrics"]["params"] for p in data["points"])
    assert big - small == (10**9 - 12) * 7_087_872  # GPT-2's exact per-layer count


def test_plot_to_a_folder_or_an_unwritable_path(runner, tmp_path):
    folder = tmp_path / "chart.png"
    folder.mkdir()
    assert "is a folder" in _error(runner, "--vary", "seq=128", "--plot", str(folder))
    line = _error(runner, "--vary", "seq=128", "--plot", "/proc/chart.png")
    assert "/proc/chart.png: cannot write it" in line
    from llmcalc.views.report import check_plot_path

    assert check_plot_path(str(tmp_path / "new.png")) == tmp_path / "new.png"
    assert not (tmp_path / "new.png").exists()  # the check writes nothing it leaves behind

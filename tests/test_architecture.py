"""The layout keeps its promises (docs/architecture.md): data flows one way, config -> model ->
params -> flops -> memory -> views -> cli, and inside a question package from the closed form to
the counters, the analysis and the report; no module passes 400 lines; the closed forms import no
torch, at any depth, so the formula-only commands stay instant."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "llmcalc"

# Top-level helpers any stage may use (0), then the packages in pipeline order.
STAGE = {
    "errors": 0,
    "units": 0,
    "output": 0,
    "layout": 0,
    "tidy": 0,
    "config": 1,
    "model": 2,
    "params": 3,
    "flops": 4,
    "memory": 5,
    "parallel": 6,
    "views": 7,
    "cli": 8,
}
# Inside a question package: closed form -> counted on the module -> analysis -> report.
ROOM = {
    "expr": 0,
    "formula": 0,
    "relatives": 0,
    "conventions": 0,
    "activations": 0,
    "latent": 0,
    "experts": 0,
    "parameters": 0,
    "transients": 0,
    "count": 1,
    "defer_dynamo": 1,
    "train_step": 1,
    "trace": 1,
    "measure": 1,
    "analysis": 2,
    "report": 3,
}
CLOSED_FORMS = [
    "params/expr.py",
    "params/formula.py",
    "params/relatives.py",
    "flops/formula.py",
    "flops/conventions.py",
    "memory/formula.py",
    "memory/activations.py",
    "memory/latent.py",
    "memory/experts.py",
    "memory/parameters.py",
    "memory/transients.py",
    "parallel/tensor.py",
    "parallel/expert.py",
    "parallel/interconnect.py",
    "parallel/plan.py",
    "parallel/search.py",
    "parallel/layout.py",
    "parallel/states.py",
    "parallel/memory.py",
    "parallel/buffers.py",
    "parallel/comm.py",
    "config/schema.py",
    "parallel/context.py",
    "parallel/pipeline.py",
    "parallel/pipeline_memory.py",
]
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))


def _dotted(path: Path) -> list[str]:
    return list(path.relative_to(PACKAGE).with_suffix("").parts)


def _imports(path: Path) -> list[tuple[list[str], int]]:
    """(llmcalc module path as parts, line) of every llmcalc import, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmcalc."):
            found.append((node.module.split(".")[1:], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("llmcalc."):
                    found.append((alias.name.split(".")[1:], node.lineno))
    return found


def test_every_module_has_a_stage_and_every_package_module_a_room():
    for path in MODULES:
        parts = _dotted(path)
        assert parts[0] in STAGE, f"{path}: add its package to STAGE"
        if parts[0] in ("params", "flops", "memory"):
            assert parts[1] in ROOM, f"{path}: add its room to ROOM"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: "/".join(_dotted(p)))
def test_no_import_runs_back_up_the_pipeline(path):
    here = _dotted(path)
    for target, line in _imports(path):
        where = f"{'/'.join(here)}.py:{line} imports llmcalc.{'.'.join(target)}"
        assert STAGE[target[0]] <= STAGE[here[0]], f"{where}: a later stage"
        same_question = target[0] == here[0] and here[0] in ("params", "flops", "memory")
        if same_question and len(target) > 1:
            assert ROOM[target[1]] <= ROOM[here[1]], f"{where}: a later room"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: "/".join(_dotted(p)))
def test_no_module_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


@pytest.mark.parametrize("name", CLOSED_FORMS)
def test_closed_forms_import_no_torch_at_any_depth(name):
    for node in ast.walk(ast.parse((PACKAGE / name).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        assert not any(n == "torch" or n.startswith("torch.") for n in names), name


def test_formula_only_work_runs_without_torch():
    code = (
        "import sys\n"
        "from llmcalc.config.presets import load_config\n"
        "from llmcalc.flops.conventions import conventions\n"
        "from llmcalc.flops.formula import forward_flops\n"
        "from llmcalc.memory.analysis import analyze_memory\n"
        "from llmcalc.params.relatives import twelve_d2\n"
        "from llmcalc.views.compare import compare_models\n"
        "from llmcalc.views.sweep import run_sweep\n"
        "cfg = load_config('llama-2-7b')\n"
        "forward_flops(cfg, 1, 128); conventions(cfg, 1, 128); twelve_d2(cfg)\n"
        "analyze_memory(cfg, seq=128, gpu_memory=2**36)\n"
        "compare_models([cfg, load_config('gpt2')], 1, 128, 'mixed', 'bf16')\n"
        "run_sweep('gpt2', {}, [('n_layers', [2, 4])], 1, 128, 'mixed', 'bf16')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

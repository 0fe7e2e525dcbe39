"""`llmcalc plan`: the layouts it enumerates are valid, its best-first search finds what an
exhaustive search finds, its time model is the stated formula, its errors are one line, its tables
never cut a value, and it imports no torch."""

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.errors import LLMCalcError
from llmcalc.flops.formula import forward_flops, step_flops
from llmcalc.parallel import plan as planning
from llmcalc.parallel.interconnect import GIB, MACHINES, machine
from llmcalc.parallel.layout import Layout, check_layout

REPO = Path(__file__).resolve().parents[2]


def test_every_gpu_kind_has_memory_links_and_sources():
    for gpu in ("a100", "h100", "h200", "b200", "mi300x"):
        m = MACHINES[gpu]
        assert m.memory > 0 and m.intra_node > m.inter_node > 0 and m.gpus_per_node == 8
        assert m.peak_flops["bf16"] > 0 and len(m.sources) == 3
    h100 = machine("H100")
    assert (h100.memory, h100.intra_node, h100.inter_node) == (80 * GIB, 450e9, 50e9)
    assert machine("h100", memory=40 * GIB, inter_node=25e9).inter_node == 25e9


def test_unknown_gpu_is_refused():
    with pytest.raises(LLMCalcError, match="--gpu 'tpu'"):
        machine("tpu")


@pytest.mark.parametrize(("name", "gpus"), [("llama-3-8b", 64), ("mixtral-8x7b", 32)])
def test_enumerated_degrees_are_valid_layouts(name, gpus):
    cfg, seq, sequences = load_config(name), 4096, 256
    found = list(planning.degrees(cfg, gpus, seq, sequences, 8))
    assert len(found) == len(set(found)) > 10
    for dp, tp, pp, cp, ep in found:
        assert dp * tp * pp * cp == gpus and tp <= 8 and sequences % dp == 0
        for schedule, v in planning.schedules(cfg, pp):
            m = max(pp, 2 * pp)
            check_layout(cfg, Layout(dp, 3, tp, tp > 1, pp, schedule, m, v, cp, ep), seq, gpus)
    if name == "mixtral-8x7b":
        assert {ep for *_, ep in found} == {1, 2, 4, 8}


def test_links_follow_megatron_rank_order():
    h100 = machine("h100")
    layout = Layout(dp=16, tp=8, pp=8)
    assert planning.link(h100, layout, "tp")[1] == "intra-node"
    assert planning.link(h100, layout, "dp")[1] == "inter-node"
    assert planning.link(h100, Layout(dp=2, tp=4), "dp")[1] == "intra-node"
    assert planning.link(h100, Layout(dp=1, tp=4, pp=2), "pp")[1] == "intra-node"


def test_ring_bytes_per_gpu():
    layout = Layout(dp=4, cp=2, tp=8, pp=2)  # ZeRO's dp group: dp · cp = 8 ranks
    row = lambda collective, group: SimpleNamespace(collective=collective, group=group, bytes=800)  # noqa: E731
    assert planning.wire_bytes(row("all-reduce", "dp"), layout) == 2 * 800 * 7 // 8
    assert planning.wire_bytes(row("all-gather", "dp"), layout) == 700
    assert planning.wire_bytes(row("reduce-scatter", "tp"), layout) == 700
    assert planning.wire_bytes(row("all-to-all", "cp"), layout) == 400
    assert planning.wire_bytes(row("point-to-point", "pp"), layout) == 800


def test_data_parallel_traffic_hides_behind_compute_but_one_layer():
    cfg, h100 = load_config("llama-3-8b"), machine("h100")  # 32 layers
    layout = Layout(dp=16, tp=8)
    rows = [
        SimpleNamespace(collective="all-reduce", group="dp", bytes=16 * 10**9),  # sends 30 GB
        SimpleNamespace(collective="all-reduce", group="tp", bytes=8 * 10**9),  # sends 14 GB
    ]
    comm = SimpleNamespace(rows=rows)
    sent, exposed, links = planning.exposed_time(h100, layout, cfg, comm, 10.0)
    assert sent == {"dp": 30 * 10**9, "tp": 14 * 10**9}
    assert links == {"dp": "inter-node", "tp": "intra-node"}
    assert exposed["dp"] == pytest.approx(0.6 / 32)  # 0.6 s on the network, one layer's exposed
    assert exposed["tp"] == pytest.approx(14e9 / 450e9)  # not overlapped
    _, exposed, _ = planning.exposed_time(h100, layout, cfg, comm, 0.5)
    assert exposed["dp"] == pytest.approx(0.1)  # 0.6 s of traffic behind 0.5 s of compute


def _setup(name="llama-3-8b", gpus=16, seq=2048, sequences=64, gpu_mem=None, changes=None):
    cfg = load_config(name, changes or {})
    hw = machine("h100", memory=gpu_mem)
    return cfg, gpus, hw, seq, sequences * seq


def test_time_is_compute_plus_exposed_comm_plus_bubble():
    cfg, gpus, hw, seq, tokens = _setup()
    result = planning.plan(cfg, gpus, hw, seq, tokens, top=5)
    assert result.best
    for c in result.best:
        lay = c.layout
        step = step_flops(cfg, forward_flops(cfg, tokens // seq, seq), c.checkpointing).hardware
        assert c.flops == step // (lay.dp * lay.tp * lay.pp * lay.cp)
        assert c.compute == pytest.approx(c.flops / (989.4e12 * 0.4))
        assert c.bubble == pytest.approx(
            (lay.pp - 1) / (lay.virtual_stages * lay.microbatches) * c.compute
        )
        assert c.step == pytest.approx(c.compute + sum(c.exposed.values()) + c.bubble)
        assert c.memory.peak <= hw.memory
        assert lay.dp * c.batch * lay.microbatches * seq == tokens
        check_layout(cfg, lay, seq, gpus)
    steps = [c.step for c in result.best]
    assert steps == sorted(steps)


def _exhaustive(cfg, gpus, hw, seq, tokens, top):
    """Every candidate's memory and time, no pruning: the best per (degrees, schedule)."""
    from llmcalc.parallel.comm import communication
    from llmcalc.parallel.memory import parallel_memory

    sequences = tokens // seq
    peak, _ = planning.peak(hw, "mixed")
    fw = forward_flops(cfg, sequences, seq)
    best, too_big = {}, 0
    for dp, tp, pp, cp, ep in planning.degrees(cfg, gpus, seq, sequences, 8):
        for (schedule, v), batch, recompute, zero in itertools.product(
            planning.schedules(cfg, pp),
            planning.divisors(sequences // dp),
            ("none", "full"),
            range(4) if dp * cp > 1 else [0],  # ZeRO over one rank: not enumerated
        ):
            m = sequences // dp // batch
            if pp > 1 and (m < pp or (schedule == "interleaved" and m % pp)):
                continue
            lay = Layout(dp, zero, tp, tp > 1, pp, schedule, m, v, cp, ep)
            try:
                need = parallel_memory(cfg, lay, batch, seq, "mixed", "adamw", recompute, "sdpa")
                comm = communication(cfg, lay, batch, seq, "mixed", recompute)
            except LLMCalcError:  # a layout the closed forms do not model
                continue
            if need.peak > hw.memory:
                too_big += 1
                continue
            compute = step_flops(cfg, fw, recompute).hardware // (dp * tp * pp * cp) / (peak * 0.4)
            _, exposed, _ = planning.exposed_time(hw, lay, cfg, comm, compute)
            t = compute + sum(exposed.values()) + (pp - 1) / (v * m) * compute
            key = (dp, tp, pp, cp, ep, schedule)
            best[key] = min(best.get(key, math.inf), t)
    return sorted(best.items(), key=lambda item: item[1])[:top], too_big


@pytest.mark.parametrize(
    "setup",
    [
        dict(name="llama-3-8b", changes={"n_layers": 8}, gpus=16, seq=2048, sequences=16),
        dict(
            name="llama-3-8b", changes={"n_layers": 8}, gpus=16, seq=2048, sequences=16,
            gpu_mem=8 * GIB,
        ),
        dict(
            name="mixtral-8x7b", changes={"n_layers": 4}, gpus=8, seq=1024, sequences=8,
            gpu_mem=40 * GIB,
        ),
    ],
    ids=["8b-8-layers", "8b-8-layers-8GiB", "mixtral-4-layers-40GiB"],
)  # fmt: skip
def test_best_first_search_finds_what_an_exhaustive_search_finds(setup):
    cfg, gpus, hw, seq, tokens = _setup(**setup)
    result = planning.plan(cfg, gpus, hw, seq, tokens, top=6)
    expected, too_big = _exhaustive(cfg, gpus, hw, seq, tokens, 6)
    assert [c.step for c in result.best] == pytest.approx([t for _, t in expected])
    assert max(result.timed, result.memory_checked) < result.candidates  # pruned
    if setup.get("gpu_mem"):
        assert too_big > 0  # the memory limit rules some candidates out


def test_requests_that_cannot_be_met_are_refused():
    cfg = load_config("llama-3-8b")
    with pytest.raises(LLMCalcError, match=r"--global-batch 1000: not a multiple of --seq 512"):
        planning.plan(cfg, 8, machine("h100"), 512, 1000)
    # 1024 GPUs, tp ≤ 8, pp ≤ 32 layers, cp 1 (it must divide seq 1023): dp ≥ 4, and 4 ∤ 3
    with pytest.raises(LLMCalcError, match=r"--global-batch 3069: 3 sequences .* dp 4\); give"):
        planning.plan(cfg, 1024, machine("h100"), 1023, 3 * 1023)
    with pytest.raises(
        LLMCalcError, match=r"--gpu-mem 1.00 GiB: no layout fits; the smallest need"
    ):
        planning.plan(cfg, 8, machine("h100", memory=GIB), 1024, 8 * 1024)


def _cli(*args, env=None):
    return CliRunner().invoke(app, ["plan", *args], env=env or {"COLUMNS": None})


def test_cli_errors_are_one_line_exit_2():
    base = ["llama-3-8b", "--seq", "1024"]
    cases = [
        ([*base, "--gpus", "0", "--global-batch", "8192"], "Error: --gpus 0: must be positive"),
        ([*base, "--gpus", "x", "--global-batch", "8192"], "Error: Invalid value for '--gpus'"),
        ([*base, "--gpus", "8", "--gpu", "tpu", "--global-batch", "8192"], "Error: --gpu 'tpu'"),
        ([*base, "--gpus", "8", "--global-batch", "1000"], "Error: --global-batch 1000"),
        ([*base, "--gpus", "8", "--global-batch", "8192", "--gpu-mem", "1GiB"], "Error: --gpu-mem"),
    ]
    for args, start in cases:
        result = _cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(start), (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1


ARGS = ["llama-3-8b", "--gpus", "16", "--seq", "2048", "--global-batch", "131072", "--top", "3"]


def test_json_has_the_breakdown_and_the_assumptions():
    result = _cli(*ARGS, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["global_batch_tokens"] == 131072 and data["sequences"] == 64
    assert len(data["best"]) == 3 and len(data["assumptions"]) >= 8
    first = data["best"][0]
    t = first["time_s"]
    assert t["step"] == pytest.approx(t["compute"] + t["exposed_comm"] + t["bubble"])
    assert first["memory"]["peak"] <= data["machine"]["memory"]
    assert first["memory"]["peak_rank"] in first["memory"]["ranks"]


def test_table_never_cuts_a_value():
    piped = _cli(*ARGS).stdout
    assert "Assumptions:" in piped and "…" not in piped
    numbers = set(re.findall(r"\d[\d,.]*\d", piped))
    assert len(numbers) > 20
    for width in (40, 60, 80, 200):
        out = _cli(*ARGS, env={"COLUMNS": str(width)}).stdout
        assert "…" not in out
        missing = [
            n for n in numbers if not re.search(rf"(?<![\d,.]){re.escape(n)}(?![,.]?\d)", out)
        ]
        assert not missing, (width, missing, out)


def test_plan_imports_no_torch():
    code = (
        "import sys\n"
        "from llmcalc.cli.app import app\n"
        "app(['plan', 'llama-3-8b', '--gpus', '16', '--seq', '2048', '--global-batch', '131072',"
        " '--json'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)

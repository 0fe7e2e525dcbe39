"""Memory: the KV cache the model really fills, and the formula against the traced step.

Expected values come from the real model (cache tensors, a training step traced on fake tensors,
a real step on CPU), never from the formula under test."""

import itertools
import json

import pytest
import torch

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.activations import saved_activations
from llmcalc.memory.formula import inference_memory, kv_cache_bytes, training_memory
from llmcalc.memory.parameters import parameter_sizes
from llmcalc.memory.trace import trace_prefill, trace_training
from llmcalc.model.attention import KVCache
from llmcalc.model.transformer import build_model
from llmcalc.views.check import EXPERT_AXES, grid_configs
from tests.conftest import decode_in_steps, tiny

GRID = list(grid_configs()) + grid_configs(EXPERT_AXES)  # MoE and MLA variants last

# --- KV cache ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1], ids=["MHA", "GQA", "MQA"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prefill_fills_a_cache_of_exactly_the_formula_bytes(n_kv_heads, dtype):
    cfg = ModelConfig.from_dict(tiny(n_kv_heads=n_kv_heads, n_layers=3))
    model = build_model(cfg, "cpu", dtype=dtype)
    cache = KVCache(cfg, batch=3, max_len=10, device="cpu", dtype=dtype)
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (3, 10)), cache=cache)
    assert cache.length == 10
    assert all(k.abs().sum() > 0 for k in cache.keys)  # really written, not just allocated
    element = torch.tensor([], dtype=dtype).element_size()
    assert cache.nbytes == kv_cache_bytes(cfg, batch=3, seq=10, dtype_bytes=element)


@pytest.mark.parametrize(
    "position,n_kv_heads,impl",
    list(
        itertools.product(["rope", "learned", "alibi", "sinusoidal"], [4, 2, 1], ["sdpa", "eager"])
    ),
)
def test_prefill_then_decode_equals_one_full_forward(position, n_kv_heads, impl):
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict(tiny(position=position, n_kv_heads=n_kv_heads))
    model = build_model(cfg, "cpu", attention=impl).eval()
    tokens = torch.randint(0, cfg.vocab_size, (2, 12))
    cache = KVCache(cfg, 2, 12, "cpu", torch.float32)
    with torch.no_grad():
        full = model(tokens)
        steps = [model(tokens[:, :5], cache=cache), model(tokens[:, 5:8], cache=cache)]
        steps += [model(tokens[:, i : i + 1], cache=cache) for i in range(8, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


WINDOWS = {
    "all local": dict(sliding_window=4),
    "every 2nd global": dict(sliding_window=3, sliding_window_pattern=2),
    "layer 0 global": dict(sliding_window=5, global_layers=[0], n_layers=3),
    "softcaps": dict(attn_softcap=5.0, logit_softcap=3.0, sliding_window=4),
    "gemma norms": dict(scale_embeddings=True, norm_offset=True, norm_position="sandwich"),
}


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("window", WINDOWS, ids=list(WINDOWS))
def test_windowed_prefill_then_decode_equals_one_full_forward(window, impl):
    """Past the window: a local layer's cache keeps W − 1 positions and decoding still
    reproduces the full forward, where the mask keeps each query's last W keys."""
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict(tiny(n_kv_heads=2, **WINDOWS[window]))
    model = build_model(cfg, "cpu", attention=impl).eval()
    for param in model.parameters():  # Gemma's 1 + w starts at w = 0: make w matter
        torch.nn.init.normal_(param, std=0.3)
    tokens = torch.randint(0, cfg.vocab_size, (2, 12))
    full, stepped, cache = decode_in_steps(model, cfg, tokens)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    assert cache.nbytes == kv_cache_bytes(cfg, 2, 12, 4)


@pytest.mark.parametrize("seq", [1, 3, 4, 5, 9])
def test_a_local_layer_holds_window_minus_one_positions(seq):
    cfg = ModelConfig.from_dict(tiny(n_layers=2, sliding_window=4, sliding_window_pattern=2))
    cache = KVCache(cfg, 1, seq, "cpu", torch.float32)
    assert [k.shape[2] for k in cache.keys] == [min(seq, 3), seq]  # local, then global
    per_position = 2 * cfg.n_kv_heads * cfg.head_dim * 4
    assert kv_cache_bytes(cfg, 1, seq, 4) == per_position * (min(seq, 3) + seq)


def test_eager_and_sdpa_attention_agree():
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict(tiny(n_kv_heads=2))
    sdpa = build_model(cfg, "cpu")
    eager = build_model(cfg, "cpu", attention="eager")
    eager.load_state_dict(sdpa.state_dict())
    tokens = torch.randint(0, cfg.vocab_size, (2, 16))
    torch.testing.assert_close(eager(tokens), sdpa(tokens), atol=1e-5, rtol=1e-5)


def test_published_kv_cache_of_llama_2_70b():
    # 80 layers x 8 KV heads x 128 x 2 (k, v) x 2 bytes = 320 KiB per token (GQA paper setting)
    cfg = load_config("llama-2-70b")
    assert kv_cache_bytes(cfg, 1, 1, 2) == 80 * 8 * 128 * 2 * 2 == 327_680


# --- activations and phases: formula against the traced step ------------------------------------


@pytest.mark.parametrize("cfg", GRID, ids=[c.name for c in GRID])
def test_parameter_inventory_is_the_models(cfg):
    assert parameter_sizes(cfg) == [p.numel() for p in build_model(cfg).parameters()]


def _saved_by_formula(cfg, batch, seq, a, impl):
    return saved_activations(cfg, batch, seq, a, impl)


@pytest.mark.parametrize("cfg", GRID, ids=[c.name for c in GRID])
def test_saved_activations_equal_the_trace_exactly(cfg):
    cases = (("fp32", "sdpa"), ("bf16", "sdpa"), ("fp32", "eager"), ("bf16", "math"))
    for precision, impl in cases:
        a = 4 if precision == "fp32" else 2
        traced = trace_training(cfg, 2, 16, precision=precision, attention=impl)
        assert _saved_by_formula(cfg, 2, 16, a, impl) == traced.saved, (precision, impl)


PHASE_CASES = [
    ("gpt2", {}, 2, 256, "fp32", "adamw", "none", "sdpa"),
    ("gpt2", {}, 2, 256, "mixed", "adamw", "full", "sdpa"),
    (
        "gpt2",
        dict(tie_embeddings=False, n_layers=2),
        1,
        64,
        "bf16",
        "sgd-momentum",
        "none",
        "eager",
    ),
    ("llama-3.2-1b", dict(n_layers=2), 1, 128, "mixed", "adamw", "none", "sdpa"),
    ("llama-3.2-1b", dict(n_layers=2, tie_embeddings=False), 2, 256, "fp32", "sgd", "none", "sdpa"),
    ("mistral-7b", dict(n_layers=1, vocab_size=4096), 1, 512, "bf16", "adamw", "full", "sdpa"),
]


@pytest.mark.parametrize("case", PHASE_CASES, ids=lambda c: f"{c[0]}-{c[4]}-{c[5]}-{c[6]}-{c[7]}")
def test_phase_peaks_match_the_trace(case):
    name, changes, batch, seq, precision, optimizer, ckpt, impl = case
    cfg = load_config(name, changes)
    setup = dict(precision=precision, optimizer=optimizer, checkpointing=ckpt, attention=impl)
    predicted = training_memory(cfg, batch, seq, **setup)
    traced = trace_training(cfg, batch, seq, **setup)
    assert predicted.weights == traced.phases["forward"].categories["weights"]
    assert predicted.optimizer == traced.optimizer_state
    assert predicted.gradients == traced.gradients
    assert predicted.activations == traced.saved
    assert predicted.phases["forward"].total == traced.phases["forward"].total
    assert predicted.phases["optimizer"].total == traced.phases["optimizer"].total
    backward = traced.phases["backward"].total
    assert abs(predicted.phases["backward"].total - backward) <= 0.03 * backward
    assert abs(predicted.peak - traced.peak) <= 0.03 * traced.peak
    totals = sorted(phase.total for phase in traced.phases.values())
    if totals[-1] - totals[-2] > 0.01 * totals[-1]:  # a clear winner, not a near tie
        assert predicted.peak_phase == traced.peak_phase


@pytest.mark.parametrize(
    "name,batch,seq", [("gpt2", 2, 512), ("llama-3.2-1b", 1, 1024), ("mistral-7b", 2, 2048)]
)
def test_inference_prefill_matches_the_trace_exactly(name, batch, seq):
    cfg = load_config(name)
    traced = trace_prefill(cfg, batch, seq, torch.bfloat16)
    predicted = inference_memory(cfg, batch, seq, 2, 2)
    assert predicted.weights == traced.categories["weights"]
    assert predicted.kv_cache == traced.categories["kv_cache"]
    assert predicted.peak == traced.peak


def test_a_real_cpu_step_peaks_where_the_trace_does():
    from llmcalc.memory.measure import measure_training

    cfg = ModelConfig.from_dict(tiny(n_kv_heads=2, d_model=64, vocab_size=512))
    setup = dict(precision="mixed", optimizer="adamw", checkpointing="none", attention="sdpa")
    real = measure_training(cfg, 2, 16, device="cpu", **setup)
    assert real.peak == trace_training(cfg, 2, 16, **setup).peak
    assert real.reserved is None and real.rss > 0


def test_405b_trace_runs_on_fake_tensors_and_matches():
    cfg = load_config("llama-3.1-405b", {"n_layers": 4})  # all 126 layers: benchmarks/
    traced = trace_training(cfg, 1, 256, precision="mixed")
    predicted = training_memory(cfg, 1, 256, precision="mixed")
    assert abs(predicted.peak - traced.peak) <= 0.01 * traced.peak


# --- CLI ------------------------------------------------------------------------------------


def test_memory_json_has_exact_integers_and_every_section(runner):
    result = runner.invoke(
        app, ["memory", "llama-2-7b", "--seq", "1024", "--gqa", "8", "--gpu-mem", "80GiB", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    cfg = load_config("llama-2-7b", {"n_kv_heads": 8})
    assert data["n_kv_heads"] == 8
    assert data["kv_cache_bytes"] == 2 * 32 * 8 * 128 * 1024 * 2
    assert data["kv_cache"]["mha"]["bytes"] == 4 * data["kv_cache"]["gqa"]["bytes"]
    assert data["kv_cache"]["mqa"]["n_kv_heads"] == 1
    # k and v projections shrink with the KV heads: 2 · L · d · h_kv · d_h
    assert data["kv_cache"]["gqa"]["kv_params"] == 2 * 32 * 4096 * 8 * 128
    training = data["training"]
    for key in ("weights", "gradients", "optimizer", "activations", "peak"):
        assert isinstance(training[key], int)
    assert training["peak_phase"] in ("forward", "backward", "optimizer")
    assert training["weights"] == 2 * sum(p.numel() for p in build_model(cfg).parameters())
    assert data["inference"]["peak"] > data["inference"]["weights"] + data["kv_cache_bytes"]
    assert data["traced"] is None and data["measured"] is None
    assert data["fit"]["max_batch_inference"] >= 1


def test_fit_is_the_largest_batch_that_fits(runner):
    result = runner.invoke(app, ["memory", "gpt2", "--seq", "1024", "--gpu-mem", "4GiB", "--json"])
    fit = json.loads(result.stdout)["fit"]
    cfg = load_config("gpt2")
    largest = fit["max_batch_inference"]
    assert inference_memory(cfg, largest, 1024, 2, 2).peak <= 4 * 2**30
    assert inference_memory(cfg, largest + 1, 1024, 2, 2).peak > 4 * 2**30


def test_trace_and_measure_without_cuda_fall_back_to_the_trace(runner):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["memory", "gpt2", "--seq", "128", "--measure", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["measured"] is None and data["traced"]["peak"] > 0
    assert "CUDA is not available" in result.stderr


def test_measure_on_cpu_reports_a_real_run(runner):
    overrides = ["--set", "n_layers=2", "--set", "d_model=64", "--set", "n_heads=4"]
    result = runner.invoke(
        app,
        ["memory", "gpt2", "--seq", "32", "--measure", "--measure-on", "cpu", "--json", *overrides],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["measured"]["device"] == "cpu"
    assert data["measured"]["peak_bytes"] == data["traced"]["peak"]
    assert data["measured"]["reserved_bytes"] is None  # no caching allocator on CPU
    assert data["measured"]["rss_bytes"] >= data["measured"]["peak_bytes"]


def test_table_output_names_the_phases(runner):
    result = runner.invoke(app, ["memory", "llama-3-8b", "--seq", "2048", "--trace"])
    assert result.exit_code == 0
    for words in (
        "KV cache",
        "MHA",
        "GQA",
        "MQA",
        "optimizer peak",
        "traced",
        "prefill transients",
    ):
        assert words in result.stdout


@pytest.mark.parametrize(
    "args,words",
    [
        (["--gqa", "5"], ["--gqa 5", "n_heads = 12"]),
        (["--gqa", "4", "--mqa"], ["--mha, --gqa and --mqa"]),
        (["--batch", "0"], ["--batch 0", "positive"]),
        (["--seq", "-3"], ["--seq -3", "positive"]),
        (["--seq", "2048"], ["--seq 2048", "max_seq_len = 1024"]),
        (["--precision", "fp8"], ["--precision 'fp8'", "fp32, bf16, mixed"]),
        (["--optimizer", "lion"], ["--optimizer 'lion'", "adamw, sgd, sgd-momentum"]),
        (["--dtype", "int4"], ["--dtype 'int4'", "fp32, bf16, fp16"]),
        (["--checkpointing", "some"], ["--checkpointing 'some'", "none, full"]),
        (["--attention", "flash"], ["--attention 'flash'", "sdpa, eager"]),
        (["--gpu-mem", "lots"], ["--gpu-mem 'lots'", "80GiB"]),
    ],
)
def test_bad_memory_input_is_one_error_line(runner, args, words):
    result = runner.invoke(app, ["memory", "gpt2", *args])
    assert_one_line_error(result, *words)


def test_a_cpu_run_larger_than_free_ram_is_refused(runner, monkeypatch):
    monkeypatch.setattr("llmcalc.memory.analysis.free_in_words", lambda device: (1024, "RAM"))
    result = runner.invoke(
        app, ["memory", "gpt2", "--seq", "64", "--measure", "--measure-on", "cpu"]
    )
    assert_one_line_error(result, "--measure on cpu", "is free", "--trace")


def test_cuda_runs_are_refused_when_predicted_too_big_unless_forced(runner, monkeypatch):
    ran = []
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("llmcalc.memory.analysis.free_in_words", lambda device: (1024, "RAM"))
    monkeypatch.setattr(
        "llmcalc.memory.measure.build_for_training", lambda *a: ran.append(a) or _oom()
    )
    result = runner.invoke(app, ["memory", "gpt2", "--seq", "64", "--measure"])
    assert_one_line_error(result, "--measure on cuda", "--force")
    assert not ran
    # forced, the run starts; CUDA's out-of-memory error becomes one line and exit code 1
    result = runner.invoke(app, ["memory", "gpt2", "--seq", "64", "--measure", "--force"])
    assert result.exit_code == 1 and len(ran) == 1
    assert result.stderr.startswith("Error: --measure: CUDA ran out of memory")
    assert "Traceback" not in result.output


def assert_one_line_error(result, *words):
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _oom():
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.cuda
def test_measured_cuda_peak_is_within_2_percent_of_the_trace():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from llmcalc.memory.measure import measure_training

    cfg = load_config("gpt2", {"n_layers": 4})
    setup = dict(precision="mixed", optimizer="adamw", checkpointing="none", attention="sdpa")
    measured = measure_training(cfg, 4, 1024, device="cuda", **setup)
    traced = trace_training(cfg, 4, 1024, **setup)
    assert abs(measured.peak - traced.peak) <= 0.02 * traced.peak


def test_readme_memory_example_is_the_real_output(runner):
    from tests.conftest import as_printed, doc_example

    args = ["memory", "llama-2-70b", "--gqa", "8", "--gpu-mem", "141GiB", "--trace"]
    result = runner.invoke(app, args, env={"COLUMNS": None})  # piped: the width it needs
    assert doc_example("KV cache (bf16)") == as_printed(result.stdout)


def test_traced_json_sits_beside_the_prediction(runner):
    result = runner.invoke(
        app, ["memory", "gpt2", "--seq", "256", "--batch", "2", "--trace", "--json"]
    )
    data = json.loads(result.stdout)
    cfg = load_config("gpt2")
    traced = trace_training(cfg, 2, 256, precision="mixed")
    assert data["traced"]["peak"] == traced.peak
    assert data["traced"]["activations"] == traced.saved == data["training"]["activations"]
    prefill = trace_prefill(cfg, 2, 256, torch.bfloat16)
    assert data["traced"]["inference"]["peak"] == prefill.peak == data["inference"]["peak"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "mixed"])
def test_checkpointed_eager_forward_holds_the_scores(precision):
    """Under full checkpointing a block's first forward runs without autograd; with eager
    attention its moment is at the softmax (the T×T scores and their fp32 softmax), not in the
    MLP. The forward phase equals the trace."""
    cfg = ModelConfig.from_dict(tiny(n_kv_heads=2, d_model=64, n_heads=8, vocab_size=64))
    setup = dict(precision=precision, optimizer="adamw", checkpointing="full", attention="eager")
    predicted = training_memory(cfg, 2, 16, **setup).phases["forward"].total
    assert predicted == trace_training(cfg, 2, 16, **setup).phases["forward"].total


@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum"])
def test_traced_sgd_step_allocates_nothing_real(optimizer):
    """The trace runs on fake tensors; fused SGD has no fake kernel and ran on real zeros (an 8B
    XX
        stays far below that in a fresh process."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from llmcalc.config.schema import ModelConfig\n"
        "from llmcalc.memory.trace import trace_training\n"
        "cfg = ModelConfig.from_dict(dict(vocab_size=1000, d_model=4096, n_layers=5, n_heads=32))\n"
        f"trace_training(cfg, 1, 8, 'fp32', {optimizer!r}, 'none', 'sdpa')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 1_500_000  # KiB: the weights alone would be 3.8 GiB

"""Tensor and sequence parallelism: the closed form (llmcalc/parallel/tensor.py) equals what
torch's DTensor does on a fake process group, exactly (per-rank parameters, gradients, saved
activations, every collective's bytes), and the known answer of Korthikanti et al. 2022."""

from fractions import Fraction

import pytest

from llmcalc.config.presets import load_config
from llmcalc.errors import LLMCalcError
from llmcalc.parallel import tensor as T

SMALL = dict(n_layers=2, d_model=64, max_seq_len=64)
# llama-like: RMSNorm (cast before weight), SwiGLU, GQA, RoPE, no biases
LLAMA = load_config("llama-3-8b").replace(
    **SMALL,
    n_heads=8,
    n_kv_heads=4,
    head_dim=8,
    d_ff=128,
    ffn_multiplier=None,
    multiple_of=None,
    vocab_size=256,
)
LLAMA16 = LLAMA.replace(n_heads=16, n_kv_heads=8, head_dim=4)  # tp = 8 divides its KV heads
# GPT-style (Korthikanti's layer): LayerNorm, GELU, biases, learned positions, d_ff = 4h; an
# odd vocabulary (250: rank 0 holds ceil(V/t) rows at t = 4 and 8)
GPT = load_config("gpt2").replace(
    **SMALL, n_heads=8, d_ff=256, vocab_size=250, tie_embeddings=False, activation="gelu"
)
BATCH, SEQ = 2, 16

CASES = [
    ("llama", LLAMA, "sdpa", 2),
    ("llama", LLAMA, "sdpa", 4),
    ("llama16", LLAMA16, "sdpa", 8),
    ("gpt-eager", GPT, "eager", 2),
    ("gpt-eager", GPT, "eager", 8),
    ("gpt-sdpa", GPT, "sdpa", 4),
    ("gpt-tied", GPT.replace(tie_embeddings=True, vocab_size=256), "sdpa", 2),
]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("sp", [False, True], ids=["tp", "tp+sp"])
@pytest.mark.parametrize("name,cfg,impl,tp", CASES, ids=[f"{c[0]}-t{c[3]}" for c in CASES])
def test_fake_group_trace_equals_closed_form(name, cfg, impl, tp, sp, precision):
    torch = pytest.importorskip("torch")
    from llmcalc.parallel.tensor_plan import trace_tensor_parallel

    dtype, a = (torch.float32, 4) if precision == "fp32" else (torch.bfloat16, 2)
    traced = trace_tensor_parallel(cfg, tp, sp, BATCH, SEQ, dtype, impl)
    assert traced.parameter_bytes == T.rank_parameter_elements(cfg, tp, sp) * a
    assert traced.gradient_bytes == T.rank_gradient_elements(cfg, tp, sp) * a
    layer = T.layer_activations_tp(cfg, BATCH, SEQ, a, tp, sp, impl)
    assert traced.last_layer_saved == sum(layer.values())
    assert traced.saved == T.saved_activations_tp(cfg, BATCH, SEQ, a, tp, sp, impl)
    transfers = T.tp_communication(cfg, BATCH, SEQ, a, tp, sp)
    got, want = _by_phase_and_kind(traced.collectives, transfers)
    assert got == want


def _by_phase_and_kind(traced_calls, transfers):
    want: dict[tuple[str, str], list[int]] = {}
    for item in transfers:
        want.setdefault((item.phase, item.collective), []).extend([item.bytes] * item.count)
    got: dict[tuple[str, str], list[int]] = {}
    for phase, collective, size in traced_calls:
        got.setdefault((phase, collective), []).append(size)
    return {k: sorted(v) for k, v in got.items()}, {k: sorted(v) for k, v in want.items()}


@pytest.mark.parametrize("sp", [False, True], ids=["tp", "tp+sp"])
@pytest.mark.parametrize("tp", [2, 4])
def test_full_checkpointing_recomputes_these_collectives(tp, sp):
    torch = pytest.importorskip("torch")
    from llmcalc.parallel.tensor_plan import trace_tensor_parallel

    traced = trace_tensor_parallel(LLAMA, tp, sp, BATCH, SEQ, torch.float32, "sdpa", "full")
    transfers = T.tp_communication(LLAMA, BATCH, SEQ, 4, tp, sp, checkpointing="full")
    got, want = _by_phase_and_kind(traced.collectives, transfers)
    assert got == want


def test_sequence_parallel_keeps_the_gathered_input_where_tp_keeps_the_norms_whole():
    n, d, t = BATCH * SEQ, LLAMA.d_model, 4
    tp = T.layer_activations_tp(LLAMA, BATCH, SEQ, 2, t)
    sp = T.layer_activations_tp(LLAMA, BATCH, SEQ, 2, t, sequence_parallel=True)
    assert sp["attn_norm.out"] == tp["attn_norm.out"] == n * d * 2  # the all-gathered input
    assert sp["attn_norm.input_fp32"] * t == tp["attn_norm.input_fp32"] == n * d * 4
    assert sp["attn_norm.rsqrt"] * t == tp["attn_norm.rsqrt"] == n * 4


def test_per_rank_logits_and_llama_3_8b_parameters():
    cfg = load_config("llama-3-8b")
    assert T.logits_buffers(cfg, 1, 8192, 2, 8) == {
        "logits": 8192 * 16032 * 2,
        "log_softmax": 8192 * 16032 * 4,
        "logits_fp32": 8192 * 16032 * 4,
    }
    # 8,030,261,248 parameters: the 1/8 shards plus 8 copies of the norms (65 · 4096)
    assert T.rank_parameter_elements(cfg, 8) * 8 == 8_030_261_248 + 7 * 65 * 4096


# --- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
# arXiv 2205.05198, Table 2 (activation bytes per layer; section 4.1's itemization) -------------

TABLE2 = [  # (s, b, h, a, t): GPT-3 175B and the paper's 530B and 1T settings, and small ones
    (2048, 1, 12288, 96, 8),
    (2048, 1, 20480, 128, 8),
    (2048, 1, 25600, 160, 8),
    (1024, 4, 4096, 32, 4),
    (16, 2, 64, 8, 2),
]


@pytest.mark.parametrize("s,b,h,a,t", TABLE2)
def test_korthikanti_table2_term_by_term(s, b, h, a, t):
    sbh = s * b * h
    assert sum(T.korthikanti_layer(s, b, h, a).values()) == sbh * (34 + Fraction(5 * a * s, h))
    tp = T.korthikanti_layer(s, b, h, a, t)
    sp = T.korthikanti_layer(s, b, h, a, t, sequence_parallel=True)
    assert sum(tp.values()) == sbh * (10 + Fraction(24, t) + Fraction(5 * a * s, h * t))
    assert sum(sp.values()) == sbh * (Fraction(34, t) + Fraction(5 * a * s, h * t))
    for sequence_parallel, terms in ((False, tp), (True, sp)):
        total = sum(terms.values())
        assert total.denominator == 1  # whole bytes
        assert total == T.korthikanti_table2(s, b, h, a, t, sequence_parallel)


@pytest.mark.parametrize("sp", [False, True], ids=["tp", "tp+sp"])
@pytest.mark.parametrize(
    "cfg,batch,seq,t",
    [
        (GPT, BATCH, SEQ, 2),
        (GPT, BATCH, SEQ, 8),
        (GPT.replace(d_model=1024, n_heads=16, d_ff=4096), 2, 2048, 4),
    ],
    ids=["traced-t2", "traced-t8", "1024-wide-t4"],
)
def test_llmcalc_per_rank_layer_differs_from_korthikanti_by_these_terms(cfg, batch, seq, t, sp):
    """A GPT layer (LayerNorm, GELU, biases, eager attention, bf16, d_ff = 4h) on each rank,
    as torch's DTensor keeps it (the first two cases traced above), against Table 2:
    - no dropout: Korthikanti's three 1-byte masks are absent (two of sbh, one of as²b; 1/t
      where the paper splits them);
    - the softmax runs in fp32 and keeps its fp32 output (4 bytes, not 2): +2as²b/t; the matmul
      with V keeps the bf16 probabilities (the paper's 2-byte dropout output);
    - LayerNorm also keeps its mean and rstd (bf16 on CPU): 2 · 2sb · 2 bytes per layer (1/t
      with SP); the eager causal mask, T × T bool: + s²;
    - SP: torch's column-parallel linears keep the all-gathered input (2sbh each for attention
      and MLP), where Megatron's keeps its 1/t shard: + 2 · 2sbh(1 − 1/t)."""
    s, b, h, a = seq, batch, cfg.d_model, cfg.n_heads
    sbh, as2b = s * b * h, a * s * s * b
    paper = T.korthikanti_layer(s, b, h, a, t, sp)
    rest = Fraction(1, t) if sp else 1
    ours = dict(paper)
    del ours["attn.dropout_mask"], ours["mlp.dropout_mask"], ours["attn.softmax_dropout_mask"]
    ours["attn.softmax_output"] = 4 * as2b * Fraction(1, t)  # fp32
    ours["norm_statistics"] = 2 * (2 * s * b * 2) * rest
    ours["causal_mask"] = s * s
    if sp:  # the gathered inputs, whole
        ours["attn.qkv_input"] = ours["mlp.up_input"] = 2 * sbh
    llmcalc = T.layer_activations_tp(cfg, batch, seq, 2, t, sp, impl="eager")
    assert sum(llmcalc.values()) == sum(ours.values())
    difference = sum(ours.values()) - sum(paper.values())
    gathered = 2 * 2 * sbh * (1 - Fraction(1, t)) if sp else 0
    assert difference == (
        -2 * sbh * rest - as2b / t + 2 * as2b / t + 8 * s * b * rest + s * s + gathered
    )


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg,tp,sp,message",
    [
        (LLAMA, 3, False, "--tp 3: must divide n_heads = 8"),
        (LLAMA, 8, False, "--tp 8: must divide n_kv_heads = 4"),
        (LLAMA.replace(fused_qkv=True), 2, False, "does not support fused_qkv"),
        (load_config("mixtral-8x7b"), 2, False, "does not support mixture of experts"),
    ],
)
def test_refused_in_one_line(cfg, tp, sp, message):
    with pytest.raises(LLMCalcError, match=message):
        T.layer_activations_tp(cfg, 1, 16, 2, tp, sp)


def test_sequence_parallel_needs_the_sequence_divisible():
    with pytest.raises(LLMCalcError, match="--sp with --tp 4: must divide --seq 10"):
        T.layer_activations_tp(LLAMA, 1, 10, 2, 4, sequence_parallel=True)

"""Tensor parallelism (TP, Shoeybi et al. 2019, "Megatron-LM") and sequence parallelism (SP,
Korthikanti et al. 2022, arXiv 2205.05198) in closed form, per rank, as torch's DTensor runs the
plan of parallel/tensor_plan.py (torchtitan's llama plan). No torch here.

Checked exactly on torch's fake process group (tests/parallel/test_tensor.py): per-rank
parameter elements, saved activations of a layer and outside the layers, and every collective.

Symbols: t the TP degree, n = B·T tokens, d d_model, a bytes per activation element, V vocab.
A vocabulary (or position table) that t does not divide is cut as torch.chunk cuts it: rank 0
holds ceil(V/t) rows, the most of any rank, and is the rank described.

Communication convention (bytes per rank and call): an all-reduce counts its tensor's bytes, an
all-gather its output (the gathered, full tensor), a reduce-scatter its input (the full tensor);
in each case the bytes of the full tensor, n·d·a for a layer's activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from llmcalc.config.experts import is_latent, is_moe
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.activations import head_activations, layer_activations

FP32 = 4


def check_tensor_parallel(
    cfg: ModelConfig, tp: int, sequence_parallel: bool = False, seq: int | None = None
) -> None:
    """Refuse what the plan cannot shard, one line naming the option, its value and the rule."""
    if tp < 1:
        raise LLMCalcError(f"--tp {tp}: must be at least 1")
    if tp == 1:
        return
    unsupported = [
        (cfg.fused_qkv, "fused_qkv"),
        (is_latent(cfg), "latent attention"),
        (is_moe(cfg), "mixture of experts"),
        (cfg.block != "serial", f"block: {cfg.block}"),
        (cfg.norm_position != "pre", f"norm_position: {cfg.norm_position}"),
        (cfg.qk_norm != "none", f"qk_norm: {cfg.qk_norm}"),
        (cfg.position == "alibi", "position: alibi"),
        (cfg.attention_sinks, "attention_sinks"),
        (cfg.embedding_norm, "embedding_norm"),
    ]
    for bad, what in unsupported:
        if bad:
            raise LLMCalcError(
                f"--tp {tp}: tensor parallelism does not support {what} ({cfg.name})"
            )
    for name, size in (
        ("n_heads", cfg.n_heads),
        ("n_kv_heads", cfg.n_kv_heads),
        ("d_ff", cfg.d_ff),
    ):
        if size % tp:
            raise LLMCalcError(f"--tp {tp}: must divide {name} = {size} ({cfg.name})")
    if sequence_parallel and seq is not None and seq % tp:
        raise LLMCalcError(f"--sp with --tp {tp}: must divide --seq {seq}")


def chunk(size: int, tp: int) -> int:
    """Rank 0's share of `size` rows cut in tp (torch.chunk: ceil)."""
    return -(-size // tp)


def local_config(cfg: ModelConfig, tp: int) -> ModelConfig:
    """One rank's share of each layer: n_heads/t query and n_kv_heads/t key/value heads of the
    same head_dim, d_ff/t (Megatron's column/row split); d_model and the sequence stay whole."""
    if tp == 1:
        return cfg
    return cfg.replace(
        n_heads=cfg.n_heads // tp,
        n_kv_heads=cfg.n_kv_heads // tp,
        head_dim=cfg.head_dim,
        d_ff=cfg.d_ff // tp,
        ffn_multiplier=None,
        multiple_of=None,
    )


# --- parameters --------------------------------------------------------------------------------


def _norm(cfg: ModelConfig, name: str) -> dict[str, int]:
    if not cfg.norm_affine:
        return {}
    bias = cfg.norm == "layernorm" and cfg.norm_bias
    return {f"{name}.weight": cfg.d_model, **({f"{name}.bias": cfg.d_model} if bias else {})}


def _linear(name: str, inputs: int, outputs: int, bias: bool, out_bias: int) -> dict[str, int]:
    return {f"{name}.weight": inputs * outputs, **({f"{name}.bias": out_bias} if bias else {})}


def layer_parameters(cfg: ModelConfig, tp: int) -> dict[str, int]:
    """Elements of each parameter of one layer on each rank: column-parallel q/k/v and up/gate
    keep 1/t of their rows and bias, row-parallel o/down 1/t of their columns and the whole bias
    (Replicate), norms whole (Replicate)."""
    d, q, kv, f = cfg.d_model, cfg.q_dim // tp, cfg.kv_dim // tp, cfg.d_ff // tp
    sizes = _norm(cfg, "attn_norm")
    for part, width in (("q", q), ("k", kv), ("v", kv)):
        sizes |= _linear(f"attn.{part}_proj", d, width, cfg.qkv_bias, width)
    sizes |= _linear("attn.o_proj", q, d, cfg.out_bias, d)
    sizes |= _norm(cfg, "mlp_norm")
    if cfg.is_glu:
        sizes |= _linear("mlp.gate_proj", d, f, cfg.mlp_bias, f)
    sizes |= _linear("mlp.up_proj", d, f, cfg.mlp_bias, f)
    sizes |= _linear("mlp.down_proj", f, d, cfg.mlp_bias, d)
    return sizes


def outer_parameters(cfg: ModelConfig, tp: int, sequence_parallel: bool = False) -> dict[str, int]:
    """Elements of each parameter outside the layers on rank 0: the vocabulary-parallel embedding
    and head (ceil(V/t) rows; a tied head is the embedding, once), learned positions whole (split
    over positions with SP), the final norm whole."""
    d = cfg.d_model
    sizes = {"tok_embeddings.weight": chunk(cfg.vocab_size, tp) * d}
    if cfg.position == "learned":
        rows = cfg.max_seq_len + cfg.position_offset
        sizes["pos_embeddings.weight"] = (chunk(rows, tp) if sequence_parallel else rows) * d
    if cfg.final_norm:
        sizes |= _norm(cfg, "final_norm")
    if not cfg.tie_embeddings:
        sizes["lm_head.weight"] = chunk(cfg.vocab_size, tp) * d
    if cfg.lm_head_bias:
        sizes["lm_head.bias"] = chunk(cfg.vocab_size, tp)
    return sizes


def rank_parameter_elements(cfg: ModelConfig, tp: int, sequence_parallel: bool = False) -> int:
    """All parameter elements on rank 0 (multiply by the parameter dtype's bytes)."""
    check_tensor_parallel(cfg, tp)
    outer = sum(outer_parameters(cfg, tp, sequence_parallel).values())
    return outer + cfg.n_layers * sum(layer_parameters(cfg, tp).values())


def rank_gradient_elements(cfg: ModelConfig, tp: int, sequence_parallel: bool = False) -> int:
    """Gradient elements on rank 0 after backward, as torch makes them: each like its parameter,
    except a vocabulary-parallel embedding's gradient, which torch's DTensor computes Replicate:
    the whole V·d table on every rank (and with SP the whole position table). Tied to the head,
    the head's Shard(0) gradient comes first and the sum stays Shard(0): 1/t."""
    total = rank_parameter_elements(cfg, tp, sequence_parallel)
    if tp == 1:
        return total
    outer = outer_parameters(cfg, tp, sequence_parallel)
    if not cfg.tie_embeddings:
        total += cfg.vocab_size * cfg.d_model - outer["tok_embeddings.weight"]
    if sequence_parallel and cfg.position == "learned":
        rows = cfg.max_seq_len + cfg.position_offset
        total += rows * cfg.d_model - outer["pos_embeddings.weight"]
    return total


# --- saved activations ---------------------------------------------------------------------------

_NORM_KEPT_WHOLE = (".out", ".weight_fp32", ".one_plus_w")


def _sequence_shard(
    saved: dict[str, int], tp: int, norms: tuple[str, ...], streams: tuple[str, ...]
) -> dict[str, int]:
    """SP: what a SequenceParallel norm keeps (its input and statistics, per row) is 1/t of the
    rows; its weight copies are whole, and its output is kept by no one (the next linear keeps
    the all-gathered, full-sequence tensor: the `.out` entry, whole)."""
    out = {}
    for name, size in saved.items():
        rowwise = name in streams or (
            name.startswith(norms) and not name.endswith(_NORM_KEPT_WHOLE)
        )
        if rowwise:
            assert size % tp == 0, (name, size, tp)
            size //= tp
        out[name] = size
    return out


def layer_activations_tp(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    a: int,
    tp: int,
    sequence_parallel: bool = False,
    impl: str = "sdpa",
    local: bool = False,
) -> dict[str, int]:
    """Bytes one layer keeps for backward on each rank, by tensor (memory/activations.py's names).
    TP: the single-GPU layer with n_heads/t, n_kv_heads/t and d_ff/t (local_config); the norms,
    their outputs (the column-parallel linears' input) and the layer's input stay whole. TP+SP:
    the norms' inputs and statistics are 1/t (Shard(1) on the sequence); the column-parallel
    linears keep the all-gathered full n·d input (torch's DTensor saves its matmul's Replicate
    input), where Megatron's SP keeps the 1/t shard and gathers it again in backward."""
    check_tensor_parallel(cfg, tp, sequence_parallel, seq)
    saved = layer_activations(local_config(cfg, tp), batch, seq, a, impl, local=local)
    if not sequence_parallel or tp == 1:
        return saved
    return _sequence_shard(saved, tp, ("attn_norm.", "mlp_norm."), ("x", "h"))


def head_activations_tp(
    cfg: ModelConfig, batch: int, seq: int, a: int, tp: int, sequence_parallel: bool = False
) -> dict[str, int]:
    """Kept outside the layers on rank 0: token ids, targets, position tables as on one GPU; the
    fp32 log-softmax (and soft-capped logits) of the local ceil(V/t) vocabulary columns (torch's
    loss_parallel); with SP the final norm's input and statistics 1/t, and the head's input
    all-gathered, whole."""
    check_tensor_parallel(cfg, tp, sequence_parallel, seq)
    saved = head_activations(cfg, batch, seq, a)
    n = batch * seq
    vocab = chunk(cfg.vocab_size, tp)
    saved["log_softmax"] = n * vocab * FP32
    if "logits_tanh" in saved:
        saved["logits_tanh"] = n * vocab * a
    if not sequence_parallel or tp == 1 or not cfg.final_norm:
        return saved
    return _sequence_shard(saved, tp, ("final_norm.",), ("last_layer_out",))


def saved_activations_tp(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    a: int,
    tp: int,
    sequence_parallel: bool = False,
    impl: str = "sdpa",
) -> int:
    """Everything one training step keeps for backward on rank 0."""
    from llmcalc.memory.experts import layer_kinds

    total = sum(head_activations_tp(cfg, batch, seq, a, tp, sequence_parallel).values())
    for (local, _), count in layer_kinds(cfg).items():
        layer = layer_activations_tp(cfg, batch, seq, a, tp, sequence_parallel, impl, local)
        total += count * sum(layer.values())
    return total


def logits_buffers(cfg: ModelConfig, batch: int, seq: int, a: int, tp: int) -> dict[str, int]:
    """The head's buffers on rank 0 under loss_parallel: the local logits (n·ceil(V/t), in the
    activation dtype), their fp32 copy for the loss (bf16 only; model.Transformer's .float()),
    the fp32 log-softmax (saved, above)."""
    n, vocab = batch * seq, chunk(cfg.vocab_size, tp)
    buffers = {"logits": n * vocab * a, "log_softmax": n * vocab * FP32}
    if a != FP32:
        buffers["logits_fp32"] = n * vocab * FP32
    return buffers


# --- communication ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """`count` calls of one collective, each of `bytes` (the convention above), per rank."""

    collective: str  # all_reduce | all_gather | reduce_scatter
    cause: str  # activations | gradients
    phase: str  # forward | backward | optimizer
    where: str
    count: int
    bytes: int

    @property
    def total(self) -> int:
        return self.count * self.bytes


def tp_communication(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    a: int,
    tp: int,
    sequence_parallel: bool = False,
    grad_bytes: int | None = None,
    checkpointing: str = "none",
) -> list[Transfer]:
    """Every collective of one training step on each rank, as torch's DTensor issues them.
    TP: forward an all-reduce after the embedding and after each row-parallel linear (o, down);
    backward an all-reduce of the input gradient of EACH column-parallel linear (q, k, v, gate,
    up and the head: torch reduces each separately where Megatron reduces once per block).
    TP+SP: forward a reduce-scatter where TP all-reduces and an all-gather before each block's
    column-parallel linears and the head; backward the reverse (the all-gather's backward is a
    reduce-scatter and vice versa; the embedding's gradient is all-gathered). loss_parallel:
    three all-reduces of n fp32 values (the rows' max, sum of exponentials and picked logit).
    SP's replicated norm weights get Partial gradients, all-reduced when the optimizer reads
    them (cause gradients; grad_bytes per element, default a). Full checkpointing recomputes
    each block in backward up to its last saved tensor (torch.utils.checkpoint's early stop):
    the o_proj all-reduce (TP) or the attention all-gather, o_proj reduce-scatter and MLP
    all-gather (SP) once more per layer; the down projection's collective is not redone."""
    check_tensor_parallel(cfg, tp, sequence_parallel, seq)
    if tp == 1:
        return []
    n, L, d = batch * seq, cfg.n_layers, cfg.d_model
    stream = n * d * a
    colwise = 3 + (2 if cfg.is_glu else 1)
    out: list[Transfer] = []

    def add(
        collective: str, phase: str, where: str, count: int, size: int, cause: str = "activations"
    ) -> None:
        out.append(Transfer(collective, cause, phase, where, count, size))

    if not sequence_parallel:
        add("all_reduce", "forward", "tok_embeddings", 1, stream)
        add("all_reduce", "forward", "attn.o_proj, mlp.down_proj", 2 * L, stream)
        add("all_reduce", "forward", "loss_parallel", 3, n * FP32)
        add("all_reduce", "backward", "column-parallel inputs", colwise * L, stream)
        add("all_reduce", "backward", "lm_head", 1, stream)
        if checkpointing == "full":
            add("all_reduce", "backward", "recomputed attn.o_proj", L, stream)
        return out
    positions = seq * d * a  # learned positions: the (T, d) table split over positions
    add("reduce_scatter", "forward", "tok_embeddings", 1, stream)
    if cfg.position == "learned":
        add("reduce_scatter", "forward", "pos_embeddings", 1, positions)
    add("reduce_scatter", "forward", "attn.o_proj, mlp.down_proj", 2 * L, stream)
    add("all_gather", "forward", "attn, mlp inputs", 2 * L, stream)
    add("all_gather", "forward", "lm_head", 1, stream)
    add("all_reduce", "forward", "loss_parallel", 3, n * FP32)
    add("all_gather", "backward", "attn.o_proj, mlp.down_proj", 2 * L, stream)
    add("reduce_scatter", "backward", "attn, mlp inputs", 2 * L, stream)
    add("reduce_scatter", "backward", "lm_head", 1, stream)
    add("all_gather", "backward", "tok_embeddings", 1, stream)
    if cfg.position == "learned":
        add("all_gather", "backward", "pos_embeddings", 1, positions)
    if checkpointing == "full":
        add("all_gather", "backward", "recomputed attn, mlp inputs", 2 * L, stream)
        add("reduce_scatter", "backward", "recomputed attn.o_proj", L, stream)
    norms = [size for name, size in layer_parameters(cfg, tp).items() if "norm" in name]
    final = list(_norm(cfg, "final_norm").values()) if cfg.final_norm else []
    g = a if grad_bytes is None else grad_bytes
    for size, count in [(s, L) for s in norms] + [(s, 1) for s in final]:
        add("all_reduce", "optimizer", "SequenceParallel norms", count, size * g, "gradients")
    return out


def comm_by_collective(transfers: list[Transfer]) -> dict[str, int]:
    """Total bytes per collective kind."""
    totals: dict[str, int] = {}
    for item in transfers:
        totals[item.collective] = totals.get(item.collective, 0) + item.total
    return totals


# --- the known answer: Korthikanti et al. 2022, section 4 and Table 2 --------------------------------


def korthikanti_layer(
    s: int, b: int, h: int, heads: int, t: int = 1, sequence_parallel: bool = False
) -> dict[str, Fraction]:
    """Activation bytes per layer of Korthikanti et al. 2022 (arXiv 2205.05198) section 4.1, term
    by term: fp16 (2 bytes), 1-byte dropout masks, a GPT layer with d_ff = 4h and LayerNorm.
    Section 4.2.2: TP splits the terms inside attention and the MLP by t; section 4.2.3: SP
    splits the rest (layer norms, dropouts, the linears' inputs) by t too."""
    sbh, as2b = s * b * h, heads * s * s * b
    split = Fraction(1, t)  # inside TP's column/row split
    rest = split if sequence_parallel else Fraction(1)  # outside it: SP shards the sequence
    return {
        "attn.layernorm_input": 2 * sbh * rest,
        "attn.qkv_input": 2 * sbh * rest,
        "attn.q_k": 4 * sbh * split,  # Q and K for QKᵀ
        "attn.softmax_output": 2 * as2b * split,
        "attn.softmax_dropout_mask": as2b * split,
        "attn.softmax_dropout_output": 2 * as2b * split,
        "attn.v": 2 * sbh * split,
        "attn.out_linear_input": 2 * sbh * split,
        "attn.dropout_mask": sbh * rest,
        "mlp.layernorm_input": 2 * sbh * rest,
        "mlp.up_input": 2 * sbh * rest,
        "mlp.gelu_input": 8 * sbh * split,
        "mlp.down_input": 8 * sbh * split,
        "mlp.dropout_mask": sbh * rest,
    }


def korthikanti_table2(
    s: int, b: int, h: int, heads: int, t: int = 1, sequence_parallel: bool = False
) -> Fraction:
    """Table 2's expressions: sbh(34 + 5as/h) without parallelism, sbh(10 + 24/t + 5as/(ht))
    with TP, sbh(34/t + 5as/(ht)) with TP+SP (a = heads)."""
    sbh, attn = s * b * h, Fraction(5 * heads * s, h * t)
    if sequence_parallel:
        return sbh * (Fraction(34, t) + attn)
    return sbh * (10 + Fraction(24, t) + attn)

"""The model's parameter tensors from the config alone, in the model's order and as runs of equal
blocks (dense and MoE layers), never a list n_layers long: optimizers keep state per tensor, and
mixed precision converts gradients one tensor at a time. No torch here."""

from __future__ import annotations

from collections.abc import Callable

from llmcalc.config.experts import is_latent, is_moe
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.experts import dense_mlp_sizes, layer_runs, moe_sizes
from llmcalc.memory.latent import latent_attention_sizes

Norm = Callable[[int], list[int]]
Linear = Callable[[int, int, bool], list[int]]

# --- parameter tensors (optimizers keep per-tensor state) --------------------------------------


def padded(rows: int, pad: int) -> int:
    """Rows of a tensor whose first dimension is padded to a multiple of `pad` (FSDP2 shards
    dimension 0 of every parameter in equal chunks over `pad` ranks)."""
    return -(-rows // pad) * pad


def _norm_and_linear(cfg: ModelConfig, pad: int = 1) -> tuple[Norm, Linear]:
    ln_bias = cfg.norm == "layernorm" and cfg.norm_bias

    def norm(width: int) -> list[int]:
        if not cfg.norm_affine:
            return []
        return [padded(width, pad)] * (2 if ln_bias else 1)

    def linear(inputs: int, outputs: int, bias: bool) -> list[int]:
        rows = padded(outputs, pad)
        return [inputs * rows, rows] if bias else [inputs * rows]

    return norm, linear


def block_sizes(cfg: ModelConfig, pad: int = 1) -> dict[bool, list[int]]:
    """One block's parameter tensors in order, for a dense (False) and an MoE (True) layer; with
    `pad`, each tensor's first dimension padded to a multiple of it."""
    d = cfg.d_model
    norm, linear = _norm_and_linear(cfg, pad)
    pre = cfg.norm_position in ("pre", "sandwich")
    out = cfg.norm_position in ("sandwich", "output")
    shared = cfg.block == "parallel_shared_norm"
    attn = [padded(cfg.n_heads, pad)] if cfg.attention_sinks else []  # gpt-oss: a logit per head
    if is_latent(cfg):
        attn += latent_attention_sizes(cfg, norm, linear)
    elif cfg.fused_qkv:
        attn += linear(d, cfg.q_dim + 2 * cfg.kv_dim, cfg.qkv_bias)
    else:
        attn += linear(d, cfg.q_dim, cfg.qkv_bias) + 2 * linear(d, cfg.kv_dim, cfg.qkv_bias)
    if not is_latent(cfg):
        attn += linear(cfg.q_dim, d, cfg.out_bias)
    if cfg.qk_norm == "per_head":  # one (heads, head_dim) weight each, no bias
        h_dim = cfg.head_dim
        attn += [padded(cfg.n_heads, pad) * h_dim, padded(cfg.n_kv_heads, pad) * h_dim]
    elif cfg.qk_norm != "none":
        heads = cfg.qk_norm == "head"
        attn += norm(cfg.head_dim if heads else cfg.q_dim) + norm(
            cfg.head_dim if heads else cfg.kv_dim
        )

    def block(moe: bool) -> list[int]:
        mlp = moe_sizes(cfg, linear, pad) if moe else dense_mlp_sizes(cfg, linear, cfg.d_ff)
        sizes = (norm(d) if pre else []) + attn + (norm(d) if out else [])
        sizes += (norm(d) if pre and not shared else []) + mlp
        sizes += norm(d) if out and not shared else []
        if cfg.norm_position == "post":
            sizes += norm(d) * (2 if cfg.block == "serial" else 1)
        return sizes

    return {False: block(False), True: block(True) if is_moe(cfg) else []}


def parameter_groups(cfg: ModelConfig, pad: int = 1) -> list[tuple[list[int], int]]:
    """Sizes of the parameter tensors in the model's order (model/; a tied head is the
    embedding, listed once), as (sizes, times): the embeddings once, the blocks as runs of
    equal blocks (dense and MoE layers: memory/experts.py's layer_runs), the head once; never
    a list n_layers long (n_layers may be 10**9); with `pad`, each tensor's first dimension
    padded to a multiple of it (what FSDP2's collectives move)."""
    d = cfg.d_model
    norm, _ = _norm_and_linear(cfg, pad)
    blocks = block_sizes(cfg, pad)
    vocab = padded(cfg.vocab_size, pad)
    first = [vocab * d]
    if cfg.position == "learned":
        first.append(padded(cfg.max_seq_len + cfg.position_offset, pad) * d)
    first += norm(d) if cfg.embedding_norm else []
    last = (norm(d) if cfg.final_norm else []) + ([] if cfg.tie_embeddings else [vocab * d])
    last += [vocab] if cfg.lm_head_bias else []
    runs = [
        ([s for moe in pattern for s in blocks[moe]], times) for pattern, times in layer_runs(cfg)
    ]
    return [(first, 1), *runs, (last, 1)]


def parameter_sizes(cfg: ModelConfig) -> list[int]:
    """Every parameter tensor's size in the model's order (a list n_layers blocks long)."""
    return [size for sizes, times in parameter_groups(cfg) for _ in range(times) for size in sizes]


def conversion_excess(groups: list[tuple[list[int], int]]) -> int:
    """Mixed precision turns the bf16 gradients into fp32 one tensor at a time (MasterWeights):
    while tensor i's fp32 copy is made, its bf16 gradient and those after it are still alive.
    Elements above the 4-bytes-per-gradient end state, at the worst tensor: max of 2·n_i minus
    twice the elements after it, in units of bytes. Of a group repeated n times only the last
    repeat can be the worst (the earlier ones have more after them), so the work is per group."""
    after, worst = 0, 0
    for sizes, times in reversed(groups):
        if times == 0:
            continue
        for size in reversed(sizes):
            worst = max(worst, 2 * size - 2 * after)
            after += size
        after += (times - 1) * sum(sizes)
    return worst

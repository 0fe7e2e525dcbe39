"""The activations one training step keeps for the backward pass, in exact bytes, tensor by
tensor: what autograd saves in each block and outside the blocks, following the model in
model/ the way torch 2.13's eager kernels save them (checked against the traced step in
tests/memory/), and the peak inside one block's backward. No torch here.

Symbols: n = B·T tokens, a bytes per activation element (4 in fp32, 2 in bf16 and mixed),
d d_model, q = h·d_h, kv = h_kv·d_h, f d_ff, V vocab_size, H n_heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmcalc.config.experts import is_latent
from llmcalc.config.schema import ModelConfig

INT64 = 8


@dataclass
class Saved:
    """Tensors kept for backward, by name; a tensor saved by two ops (a shared input) counts once."""

    bytes: dict[str, int] = field(default_factory=dict)
    # a view's name -> the tensor it is a view of, and that tensor's size: keeping the view keeps it
    views: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, name: str, size: int) -> None:
        name, size = self.views.get(name, (name, size))
        self.bytes.setdefault(name, size)

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


def _norm(
    saved: Saved,
    cfg: ModelConfig,
    name: str,
    source: str,
    rows: int,
    width: int,
    a: int,
    affine: bool | None = None,
) -> None:
    """What a norm over `width` features keeps. LayerNorm: its input, mean and rstd (in the input
    dtype on CPU), run on an fp32 copy with layernorm_compute fp32 (and an fp32 copy of the
    weight), or written op by op (ops: x − mean twice, 1/std and the normalised rows, all fp32,
    and the fp32 weight copy). RMSNorm: its input as fp32 (the input itself in fp32, a fresh copy in bf16),
    the fp32 rsqrt and, where a weight multiplies them (norm_affine, or `affine`), the normalised
    rows (fp32; with norm_cast before_weight, in the activation dtype, as the weight multiplies
    them). Its output is kept by whoever consumes it."""
    affine = cfg.norm_affine if affine is None else affine
    weight_copy = affine and a != 4  # a bf16 weight made fp32 for the product
    if cfg.norm == "layernorm" and cfg.layernorm_compute == "ops":
        saved.add(f"{name}.centred", 2 * rows * width * 4)  # x − mean, computed twice
        saved.add(f"{name}.rstd", rows * 4)
        if affine:
            saved.add(f"{name}.normalised", rows * width * 4)
        if weight_copy:
            saved.add(f"{name}.weight_fp32", width * 4)
        return
    if cfg.norm == "layernorm" and cfg.layernorm_compute == "fp32":
        saved.add(source if a == 4 else f"{name}.input_fp32", rows * width * 4)
        saved.add(f"{name}.stats", 2 * rows * 4)
        if weight_copy:  # layer_norm keeps its weight and bias: here fp32 copies
            saved.add(f"{name}.weight_fp32", width * 4 * (2 if cfg.norm_bias else 1))
        return
    if cfg.norm == "layernorm":
        saved.add(source, rows * width * a)
        saved.add(f"{name}.stats", 2 * rows * a)
        return
    saved.add(source if a == 4 else f"{name}.input_fp32", rows * width * 4)
    if affine:
        normalised = a if cfg.norm_cast == "before_weight" else 4
        saved.add(f"{name}.normalised", rows * width * normalised)
    saved.add(f"{name}.rsqrt", rows * 4)
    if cfg.norm_offset:  # Gemma's (1 + w), made in fp32 and kept by the product
        saved.add(f"{name}.one_plus_w", width * 4)


def _per_head_norm(
    saved: Saved, cfg: ModelConfig, name: str, source: str, n: int, heads: int, a: int
) -> None:
    """A per-head q or k norm (model.layers.PerHeadNorm) on (n, heads, d_h): native LayerNorm
    runs once per head on a slice (each keeps the whole source and its own statistics); ops and
    RMSNorm normalise without weight, then the (heads, d_h) weight multiplies and keeps the
    normalised rows (ops: fp32, with an fp32 copy of a bf16 weight)."""
    rows, width = n * heads, cfg.head_dim
    if cfg.norm == "layernorm" and cfg.layernorm_compute == "native":
        saved.add(source, rows * width * a)
        saved.add(f"{name}.stats", 2 * rows * a)
        return
    _norm(saved, cfg, name, source, rows, width, a, affine=False)
    ops = cfg.norm == "layernorm" and cfg.layernorm_compute == "ops"
    saved.add(f"{name}.normalised", rows * width * (4 if ops else a))
    if ops and a != 4:
        saved.add(f"{name}.weight_fp32", heads * width * 4)


def attention_impl(cfg: ModelConfig, impl: str) -> str:
    """The attention the model runs: soft-capped scores and sinks always take the eager path."""
    return "eager" if cfg.attn_softcap is not None or cfg.attention_sinks else impl


def _attention(
    saved: Saved, cfg: ModelConfig, p: str, batch: int, seq: int, a: int, impl: str, local: bool
) -> None:
    """Inside attention: the q/k/v projections' input is kept by the caller. A local layer with
    W keys or more (seq ≥ W) is masked explicitly."""
    n = batch * seq
    windowed = local and seq >= cfg.sliding_window  # masked from T = W on (model/attention.py)
    q_bytes, kv_bytes = n * cfg.q_dim * a, n * cfg.kv_dim * a
    q_name, k_name = f"{p}.q_proj", f"{p}.k_proj"
    if cfg.fused_qkv:  # q, k and v are slices of one output: keeping any slice keeps all of it
        fused = (f"{p}.qkv_proj", n * (cfg.q_dim + 2 * cfg.kv_dim) * a)
        saved.views.update({f"{p}.{part}_proj": fused for part in "qkv"})
    if cfg.qk_norm == "per_head":
        for norm, source, heads in (
            (f"{p}.q_norm", q_name, cfg.n_heads),
            (f"{p}.k_norm", k_name, cfg.n_kv_heads),
        ):
            _per_head_norm(saved, cfg, norm, source, n, heads, a)
        q_name, k_name = f"{p}.q_norm.out", f"{p}.k_norm.out"
    elif cfg.qk_norm != "none":
        width_q = cfg.head_dim if cfg.qk_norm == "head" else cfg.q_dim
        width_k = cfg.head_dim if cfg.qk_norm == "head" else cfg.kv_dim
        rows_q, rows_k = n * cfg.q_dim // width_q, n * cfg.kv_dim // width_k
        _norm(saved, cfg, f"{p}.q_norm", q_name, rows_q, width_q, a)
        _norm(saved, cfg, f"{p}.k_norm", k_name, rows_k, width_k, a)
        q_name, k_name = f"{p}.q_norm.out", f"{p}.k_norm.out"
    # q rewritten contiguous as (B, H, T, d_h): the output then needs a copy. A head-wise q/k
    # norm does that, unless it is element-wise ops (before_weight RMSNorm), which keep the layout
    # (Gemma's offset RMSNorm is element-wise ops too)
    fused_norm = cfg.norm == "layernorm" or (
        cfg.norm_cast == "after_weight" and not cfg.norm_offset
    )
    head_major = cfg.qk_norm == "head" and fused_norm
    if cfg.position == "rope":
        # x·cos + rotate_half(x)·sin keeps the cos and sin made once per forward (counted in
        # head_activations) and x's layout; a partial rotary's cat (or rope_concat's) leaves q
        # head-major
        q_name, k_name = f"{p}.q_rope", f"{p}.k_rope"
        head_major = head_major or cfg.rotary_dim < cfg.head_dim or cfg.rope_concat
    v_name = f"{p}.v_proj"
    groups = cfg.n_heads // cfg.n_kv_heads
    if impl == "math" or (impl == "sdpa" and cfg.position == "alibi"):
        # SDPA's math path (taken for an additive bias on the CPU, or asked for) works in fp32
        # and keeps scaled copies of q, k, v (k and v repeated per query head) and the T x T
        # probabilities, like eager attention.
        saved.add(f"{p}.q_scaled", n * cfg.q_dim * 4)
        saved.add(f"{p}.k_scaled", n * cfg.q_dim * 4)
        saved.add(f"{p}.v_fp32", n * cfg.kv_dim * groups * 4)
        saved.add(f"{p}.probs", batch * cfg.n_heads * seq * seq * 4)
        saved.add(f"{p}.out_copy", q_bytes)
        return
    if impl == "eager":
        # matmul copies a projection's (B, T, H, d_h) output to batch it per head, and keeps the
        # copy, not the projection's output (which a fused qkv would keep whole)
        q_name, k_name, v_name = (
            f"{name}.copy" if name.endswith("_proj") else name for name in (q_name, k_name, v_name)
        )
        upcast = cfg.attn_upcast and a != 4  # q·kᵀ of fp32 copies of q and k (GPT-J)
        score_a = 4 if upcast else a
        saved.add(f"{p}.q_fp32" if upcast else q_name, n * cfg.q_dim * score_a)
        k_kept = f"{p}.k_repeated" if groups > 1 else k_name
        saved.add(f"{p}.k_fp32" if upcast else k_kept, n * cfg.kv_dim * groups * score_a)
        saved.add(f"{p}.v_repeated" if groups > 1 else v_name, kv_bytes * groups)
        # the softmax runs in fp32 and keeps its fp32 output; the product keeps them cast back
        keys = seq + cfg.attention_sinks  # a sink is one more column (gpt-oss)
        saved.add(f"{p}.probs_fp32", batch * cfg.n_heads * seq * keys * 4)
        if a != 4:
            saved.add(f"{p}.probs", batch * cfg.n_heads * seq * seq * a)
        if cfg.attn_softcap is not None:  # c·tanh(scores / c): tanh keeps its output
            saved.add(f"{p}.scores_tanh", batch * cfg.n_heads * seq * seq * a)
        if cfg.position != "alibi":
            saved.add(f"{p}.causal_mask", seq * seq)  # bool (with the window, when local)
        saved.add(f"{p}.out_copy", q_bytes)  # (B, H, T, d_h) -> (B, T, H·d_h)
        return
    # fused SDPA keeps q, k, v, its output and the fp32 log-sum-exp: O(T) per head; with a mask
    # (a window that bites) k and v repeated per query head, as transformers hands them
    if windowed and groups > 1:
        k_name, v_name, kv_bytes = f"{p}.k_repeated", f"{p}.v_repeated", kv_bytes * groups
    saved.add(q_name, q_bytes)
    saved.add(k_name, kv_bytes)
    saved.add(v_name, kv_bytes)
    saved.add(f"{p}.out", q_bytes)
    saved.add(f"{p}.logsumexp", batch * cfg.n_heads * seq * 4)
    if windowed:  # the (B, 1, T, T) window mask, turned by SDPA into an additive one in q's dtype
        saved.add(f"{p}.window_mask", batch * seq * seq * a)
    if head_major:
        saved.add(f"{p}.out_copy", q_bytes)


def _mlp(saved: Saved, cfg: ModelConfig, p: str, n: int, a: int, width: int | None = None) -> None:
    """GELU and SiLU keep their input, ReLU its output; the product of a GLU keeps both factors;
    the down projection keeps its input. gelu_new, written op by op, also keeps 0.5·x, its tanh
    and 1 + tanh."""
    size = n * (cfg.d_ff if width is None else width) * a
    if cfg.is_glu:
        if cfg.activation != "reglu":
            saved.add(f"{p}.gate", size)
        saved.add(f"{p}.act", size)
        saved.add(f"{p}.up", size)
        saved.add(f"{p}.product", size)
        return
    if cfg.activation != "relu":
        saved.add(f"{p}.up", size)
    if cfg.activation == "gelu_new":
        for part in ("half_x", "tanh", "one_plus_tanh"):
            saved.add(f"{p}.gelu_new.{part}", size)
    saved.add(f"{p}.act", size)


def layer_activations(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    a: int,
    impl: str = "sdpa",
    local: bool = False,
    moe: bool = False,
) -> dict[str, int]:
    """Bytes one block keeps for backward, by tensor name (see model.Block's layouts); `local`:
    a layer that attends through the sliding window; `moe`: a mixture-of-experts layer. The
    layer's input is counted here; its output is counted by the next layer or the head."""
    n, d = batch * seq, cfg.d_model
    impl = attention_impl(cfg, impl)
    saved = Saved()
    pre = cfg.norm_position in ("pre", "sandwich")
    out_norm = cfg.norm_position in ("sandwich", "output")
    post = cfg.norm_position == "post"

    def branch_input(norm_name: str, source: str) -> str:
        """The tensor a branch's first linears keep: its input norm's output, or the stream."""
        if not pre:
            saved.add(source, n * d * a)
            return source
        _norm(saved, cfg, norm_name, source, n, d, a)
        saved.add(f"{norm_name}.out", n * d * a)
        return f"{norm_name}.out"

    def branch(kind: str, source: str, norm_name: str) -> None:
        # MoE and MLA live in experts.py and latent.py, which import this module
        from llmcalc.memory.experts import moe_saved
        from llmcalc.memory.latent import latent_attention_saved

        branch_input(norm_name, source)
        if kind == "attn" and is_latent(cfg):
            latent_attention_saved(saved, cfg, "attn", batch, seq, a, impl, local)
        elif kind == "attn":
            _attention(saved, cfg, "attn", batch, seq, a, impl, local)
        elif moe:
            moe_saved(saved, cfg, "mlp", n, a)
        else:
            _mlp(saved, cfg, "mlp", n, a)

    if cfg.block == "serial":
        branch("attn", "x", "attn_norm")
        if out_norm:
            _norm(saved, cfg, "attn_out_norm", "attn.o_proj", n, d, a)
        stream = "h"
        if post:
            _norm(saved, cfg, "attn_post_norm", "h", n, d, a)
            stream = "attn_post_norm.out"
        branch("mlp", stream, "mlp_norm")
        if out_norm:
            _norm(saved, cfg, "mlp_out_norm", "mlp.down_proj", n, d, a)
        if post:
            _norm(saved, cfg, "mlp_post_norm", "layer_out", n, d, a)
        return saved.bytes

    shared = cfg.block == "parallel_shared_norm"
    branch("attn", "x", "attn_norm")
    branch("mlp", "x", "attn_norm" if shared else "mlp_norm")
    if out_norm and shared:
        _norm(saved, cfg, "out_norm", "branches", n, d, a)
    elif out_norm:
        _norm(saved, cfg, "attn_out_norm", "attn.o_proj", n, d, a)
        _norm(saved, cfg, "mlp_out_norm", "mlp.down_proj", n, d, a)
    if post:
        _norm(saved, cfg, "post_norm", "layer_out", n, d, a)
    return saved.bytes


def saved_activations(cfg: ModelConfig, batch: int, seq: int, a: int, impl: str = "sdpa") -> int:
    """Everything one training step keeps for backward: each kind of layer's saved tensors
    (global or local, dense or MoE) and those outside the blocks."""
    from llmcalc.memory.experts import layer_kinds  # it imports this module

    total = sum(head_activations(cfg, batch, seq, a).values())
    for (local, moe), count in layer_kinds(cfg).items():
        saved = layer_activations(cfg, batch, seq, a, impl, local=local, moe=moe)
        total += count * sum(saved.values())
    return total


def head_activations(cfg: ModelConfig, batch: int, seq: int, a: int) -> dict[str, int]:
    """Kept outside the blocks: token ids and targets (int64), learned position ids, the last
    block's output and the final norm's, the fp32 log-softmax of the logits."""
    n, d = batch * seq, cfg.d_model
    saved = Saved()
    saved.add("tokens", n * INT64)
    saved.add("targets", n * INT64)
    if cfg.embedding_norm:  # its input, the embeddings; its output is the first block's input
        _norm(saved, cfg, "embedding_norm", "embeddings", n, d, a)
    if cfg.position == "rope":  # cos and sin, (T, rotary_dim) each, shared by every layer
        saved.add("rope_tables", 2 * seq * cfg.rotary_dim * a)
    if cfg.position == "learned":
        saved.add("position_ids", seq * INT64)
    if cfg.final_norm:
        _norm(saved, cfg, "final_norm", "last_layer_out", n, d, a)
        saved.add("final_norm.out", n * d * a)
    else:
        saved.add("last_layer_out", n * d * a)
    if cfg.scale_embeddings:  # the 0-dim sqrt(d_model) in the activation dtype
        saved.add("embedding_scale", a)
    if cfg.logit_softcap is not None:  # c·tanh(logits / c): tanh keeps its output
        saved.add("logits_tanh", n * cfg.vocab_size * a)
    saved.add("log_softmax", n * cfg.vocab_size * 4)
    saved.add("loss.total_weight", 4)  # nll_loss's fp32 scalar
    return saved.bytes


# an MoE layer's saved tensors released before its experts' first bmm's backward ends: all
# the experts' but the token indices (the gather's backward, last, needs them)
MOE_RELEASED = tuple(
    f"mlp.experts.{name}"
    for name in ("order", "rows", "gate_up", "act", "product", "out", "weights", "weighted", "up")
)
MLP_STAGE = ("mlp", "h", "attn_post_norm.out")  # saved tensors released by the MLP's backward


def block_backward_peak(
    cfg: ModelConfig, batch: int, seq: int, a: int, impl: str, saved: dict[str, int]
) -> int:
    """Largest memory inside one block's backward pass beyond what lies outside the block: the
    incoming gradient of the residual stream and the one being made (2·n·d), plus first the
    MLP stage (the block's saved tensors alive, one or two n·f gradients beyond them), then
    the attention stage (the MLP's saved tensors released; the gradients of q, k, v and the
    output, or with eager attention two of B·H·T·T)."""
    from llmcalc.memory.latent import latent_takes_math_path  # it imports this module

    impl = attention_impl(cfg, impl)
    if is_latent(cfg) and latent_takes_math_path(cfg, impl):
        impl = "math"
    n = batch * seq
    everything = sum(saved.values())
    stream = 2 * n * cfg.d_model * a
    # the down projection's input is released as its gradient is made; a GLU's product (and
    # gelu_new's 0.5·x · (1 + tanh)) then makes two gradients from one; ReLU keeps its output
    # (it is its own saved tensor)
    two = cfg.is_glu or cfg.activation in ("relu", "gelu_new")
    # gelu_recomputed's backward recomputes tanh: up to 5 n·f temporaries (model.transformer:
    # GeluRecomputed) beside the incoming gradient, before the down projection's input goes
    gradients = 6 if cfg.activation == "gelu_recomputed" else 2 if two else 1
    mlp = everything + gradients * n * cfg.d_ff * a
    if "mlp.experts.rows" in saved:  # an MoE layer: see moe_backward_in_flight
        from llmcalc.memory.experts import moe_backward_in_flight

        # first, index_add_'s gradient gathered back to n·k rows (its saved source released)
        # and the two products of the weighting's backward; at the experts' first bmm, their
        # saved tensors gone
        early = everything + 2 * n * cfg.experts_per_token * cfg.d_model * a
        released = sum(v for k, v in saved.items() if k.startswith(MOE_RELEASED))
        mlp = max(early, everything - released + moe_backward_in_flight(cfg, n, a))
    # the MLP was called last, so autograd runs its backward first, in parallel blocks too
    everything -= sum(v for k, v in saved.items() if k.startswith(MLP_STAGE))
    if impl == "eager" and cfg.attention_sinks:  # the softmax's fp32 gradients, T + 1 wide
        in_flight = 2 * batch * cfg.n_heads * seq * (seq + 1) * 4
        if a != 4:  # the cast-back probabilities, released by then
            in_flight -= batch * cfg.n_heads * seq * seq * a
    elif impl == "eager":
        in_flight = 2 * batch * cfg.n_heads * seq * seq * a
    elif impl == "math" or cfg.position == "alibi":  # SDPA's math path: its T×T gradients, fp32
        in_flight = 2 * batch * cfg.n_heads * seq * seq * 4
    else:
        in_flight = 2 * n * (cfg.q_dim + cfg.kv_dim) * a
    return stream + max(mlp, everything + in_flight)

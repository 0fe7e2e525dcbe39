"""Closed-form FLOPs of the model, per component, and the published conventions beside them.

Conventions (stated in the output and the README):
 1. One multiply-accumulate = 2 FLOPs. A matmul (m×k)·(k×n) is 2·m·k·n FLOPs.
 2. Attention scores count the full T×T matrix (PaLM, torchtitan, torch's FlopCounterMode); the
    causal half, T·(T+1)/2 scores, is shown beside it.
 3. Backward = 2 × forward for every matmul (a gradient for the input and one for the weight).
    A training step = forward + backward. Full activation recomputation runs every block's forward
    again in the backward pass (not the LM head: the loss needs its logits once); those FLOPs are
    hardware FLOPs, not model FLOPs (MFU vs HFU, Chowdhery et al. 2022, appendix B). PyTorch's
    non-reentrant checkpoint stops each rerun early, once every tensor the backward saved is back
    (torch.utils.checkpoint.set_checkpoint_early_stop, on by default): in a pre-norm block that
    skips the MLP's output projection, whose output only joins the residual stream.
 4. Matmul FLOPs exclude bias adds (nn.Linear runs addmm: counted as its matmul, as fvcore and
    FlopCounterMode do). Bias adds, norms, softmax, activations, gating, residual adds and RoPE are
    "non-matmul", counted by the per-element rule in `non_matmul_flops`.
 5. Embedding and position lookups are gathers: 0 FLOPs.
No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.experts import dense_layer_count, is_latent, moe_layer_count
from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import local_layer_count, windowed_pairs
from llmcalc.params.formula import norms_per_layer

# Matmul components, in forward order. "attn_scores" is QKᵀ, "attn_values" is softmax(QKᵀ)·V.
# A model without latent attention or experts has only the first nine (LATENT and MOE are
# listed where the model has them).
MATMUL_COMPONENTS = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_scores",
    "attn_values",
    "attn_o",
    "mlp",
    "lm_head",
)
LATENT = ("attn_q_a", "attn_q_b", "attn_kv_a", "attn_kv_b")
MOE = ("router", "experts", "shared_experts")


@dataclass(frozen=True)
class ForwardFlops:
    batch: int
    seq: int
    matmul: dict[str, int]  # component -> FLOPs of one forward pass over batch × seq tokens
    causal_attention: int  # scores + values with only the causal half of each T×T matrix
    non_matmul: dict[str, int]
    # scores + values with the pairs the masks allow: causal, and in a local layer each query's
    # last W keys (min(i + 1, W) of them); None without a sliding window
    windowed_attention: int | None = None

    @property
    def matmul_total(self) -> int:
        return sum(self.matmul.values())

    @property
    def attention_full(self) -> int:
        return self.matmul["attn_scores"] + self.matmul["attn_values"]

    @property
    def matmul_total_causal(self) -> int:
        return self.matmul_total - self.attention_full + self.causal_attention

    @property
    def matmul_total_windowed(self) -> int | None:
        if self.windowed_attention is None:
            return None
        return self.matmul_total - self.attention_full + self.windowed_attention

    @property
    def total(self) -> int:
        return self.matmul_total + sum(self.non_matmul.values())


def attention_flops(
    cfg: ModelConfig, batch: int, queries: int, keys: int, dim: int | None = None
) -> int:
    """QKᵀ (or softmax·V with `dim` the value head size): every query head scores every key,
    d_h MACs each. GQA does not change it: the h_kv key heads are shared, not fewer scores."""
    return 2 * batch * cfg.n_heads * queries * keys * (cfg.head_dim if dim is None else dim)


def value_dim(cfg: ModelConfig) -> int:
    """A value head's size: head_dim, or latent attention's v_head_dim."""
    return cfg.head_dim if cfg.v_head_dim is None else cfg.v_head_dim


def pair_flops(cfg: ModelConfig, batch: int) -> int:
    """Scores and values of one query-key pair in every head and sequence."""
    return attention_flops(cfg, batch, 1, 1) + attention_flops(cfg, batch, 1, 1, value_dim(cfg))


def matmul_flops(cfg: ModelConfig, batch: int, seq: int, keys: int | None = None) -> dict[str, int]:
    """Forward matmul FLOPs per component for `batch` sequences of `seq` new tokens attending over
    `keys` keys each (default seq: training and prefill, where every layer computes the full T×T,
    masked); per-layer components summed over layers. With `keys` given (decoding from a cache),
    a local layer attends over its window: min(keys, W) keys."""
    key_layers = attended_keys(cfg, seq, keys)
    tokens = batch * seq
    layers = cfg.n_layers
    q, kv = (
        layers * 2 * tokens * cfg.d_model * cfg.q_dim,
        layers * 2 * tokens * cfg.d_model * cfg.kv_dim,
    )
    fused = cfg.fused_qkv  # one matmul of q + 2·kv outputs: the same FLOPs as the three
    result = {
        "attn_q": 0 if fused else q,
        "attn_k": 0 if fused else kv,
        "attn_v": 0 if fused else kv,
        "attn_qkv": q + 2 * kv if fused else 0,
        "attn_scores": attention_flops(cfg, batch, seq, key_layers),
        "attn_values": attention_flops(cfg, batch, seq, key_layers, value_dim(cfg)),
        "attn_o": layers * 2 * tokens * cfg.n_heads * value_dim(cfg) * cfg.d_model,
        "mlp": dense_layer_count(cfg) * mlp_flops(cfg, tokens, cfg.d_ff),
        "lm_head": 2 * tokens * cfg.d_model * cfg.vocab_size,
    }
    if is_latent(cfg):
        result |= latent_flops(cfg, batch, seq, key_layers)
    if cfg.n_experts:
        result |= expert_flops(cfg, tokens)
    return {name: result[name] for name in FORWARD_ORDER if name in result}


FORWARD_ORDER = (*MATMUL_COMPONENTS[:4], *LATENT, *MATMUL_COMPONENTS[4:8], *MOE, "lm_head")


def attended_keys(cfg: ModelConfig, seq: int, keys: int | None = None) -> int:
    """Keys each layer attends over (and, with latent attention, decompresses), summed over the
    layers: `seq` in every layer for training and prefill (the full T×T, masked), or from a
    cache `keys` in a global layer and min(keys, W) in a local one."""
    if keys is None:
        return cfg.n_layers * seq
    local = local_layer_count(cfg)
    return (cfg.n_layers - local) * keys + local * min(keys, cfg.sliding_window or keys)


def mlp_flops(cfg: ModelConfig, tokens: int, width: int) -> int:
    """One MLP of hidden size `width` over `tokens` rows: 3 matrices with a GLU, else 2."""
    return (3 if cfg.is_glu else 2) * 2 * tokens * cfg.d_model * width


def expert_flops(cfg: ModelConfig, tokens: int) -> dict[str, int]:
    """The MoE layers' matmuls: the router's d -> E logits for every token, the routed experts
    on k rows per token (T·k rows in all, however the router spreads them: Shazeer et al. 2017;
    the counted model sends them by the balanced rule, model/experts.py), and the shared experts
    (and Qwen2-MoE's d -> 1 gate) on every token."""
    layers = moe_layer_count(cfg)
    shared = 0
    if cfg.n_shared_experts:
        shared = mlp_flops(cfg, tokens, cfg.d_ff_shared)
        shared += 2 * tokens * cfg.d_model if cfg.shared_expert_gate else 0
    return {
        "router": layers * 2 * tokens * cfg.d_model * cfg.n_experts,
        "experts": layers * mlp_flops(cfg, tokens * cfg.experts_per_token, cfg.d_ff_expert),
        "shared_experts": layers * shared,
    }


def latent_flops(cfg: ModelConfig, batch: int, seq: int, key_layers: int) -> dict[str, int]:
    """Latent attention's projections as trained (DeepSeek-V2, section 2.1; transformers): q
    through its rank-r_q latent (or attn_q, one matrix), d -> r_kv + r for every new token, and
    the decompression r_kv -> h·(n + d_v) of every key attended, cached ones included
    (`key_layers`: keys summed over layers)."""
    tokens, layers, d = batch * seq, cfg.n_layers, cfg.d_model
    result = dict.fromkeys(("attn_q", "attn_k", "attn_v", "attn_q_a", "attn_q_b"), 0)
    if cfg.q_lora_rank is None:
        result["attn_q"] = layers * 2 * tokens * d * cfg.q_dim
    else:
        result["attn_q_a"] = layers * 2 * tokens * d * cfg.q_lora_rank
        result["attn_q_b"] = layers * 2 * tokens * cfg.q_lora_rank * cfg.q_dim
    heads_kv = cfg.n_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    result["attn_kv_a"] = layers * 2 * tokens * d * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    result["attn_kv_b"] = 2 * batch * key_layers * cfg.kv_lora_rank * heads_kv
    return result


def absorbed_decode_flops(cfg: ModelConfig, position: int, batch: int = 1) -> int:
    """Matmul FLOPs of one latent-attention decode step with the up-projections absorbed
    (DeepSeek-V2, section 2.1.3; FlashMLA, vLLM and SGLang decode so): each query's nope part goes
    into the latent space through W_UK (h·n·r_kv MACs), scores the cached latent and RoPE key
    directly (h·S·(r_kv + r)), sums the latent values (h·S·r_kv) and leaves through W_UV
    (h·r_kv·d_v); no cached key is decompressed. The other matmuls as in decode_flops."""
    as_trained = matmul_flops(cfg, batch, 1, keys=position + 1)
    keys = attended_keys(cfg, 1, position + 1)  # Σ over layers of S
    heads, rank = cfg.n_heads, cfg.kv_lora_rank
    per_layer_token = 2 * heads * rank * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    absorbed = batch * (
        cfg.n_layers * per_layer_token + 2 * heads * keys * (2 * rank + cfg.qk_rope_head_dim)
    )
    replaced = as_trained["attn_kv_b"] + as_trained["attn_scores"] + as_trained["attn_values"]
    return sum(as_trained.values()) - replaced + absorbed


def causal_pairs(seq: int) -> int:
    """Query-key pairs under a causal mask: query i sees keys 0..i."""
    return seq * (seq + 1) // 2


def non_matmul_flops(cfg: ModelConfig, batch: int, seq: int) -> dict[str, int]:
    """Element-wise work, 1 FLOP per element per elementary op (an approximation, stated as such):
    RMSNorm 4/element (square, mean, scale, weight), LayerNorm 5 (+1 with bias), one less each
    without norm_affine (no weight); softmax 5 per score (max, subtract, exp, sum, divide) over the
    full T×T; activation 1 per element (2 with a gate product; 8 for gelu_new, 9 for
    gelu_recomputed, written op by op);
    bias add 1 per output; residual add
    1 per element; RoPE 3 per rotated element of q and k (two multiplies and an add), over the
    rotary_dim = int(head_dim · rope_fraction) features of each head that rotate (the rest pass
    through untouched); a scalar multiplier 1 per element it scales (embeddings, what joins the
    residual stream, logits; attention_multiplier replaces the 1/sqrt(d_h) every attention
    applies, so it adds none)."""
    tokens = batch * seq
    d, layers = cfg.d_model, cfg.n_layers
    # gelu_new: pow, 3 multiplies, 2 adds, tanh, product; gelu_recomputed: x·x for the pow, 9
    per_activation = {"gelu_new": 8, "gelu_recomputed": 9}.get(cfg.activation, 1)
    if cfg.norm_affine:
        per_norm = 4 if cfg.norm == "rmsnorm" else 5 + int(cfg.norm_bias)
    else:
        per_norm = 3 if cfg.norm == "rmsnorm" else 4
    norms = layers * tokens * per_norm * norms_per_layer(cfg) * d
    if cfg.qk_norm != "none":  # per_head: a weight, never a bias
        per_qk = (4 if cfg.norm == "rmsnorm" else 5) if cfg.qk_norm == "per_head" else per_norm
        norms += layers * tokens * per_qk * (cfg.q_dim + cfg.kv_dim)
    norms += tokens * per_norm * d * (int(cfg.final_norm) + int(cfg.embedding_norm))
    bias_elems = 0
    if cfg.qkv_bias:  # with latent attention the q and kv_a projections'
        bias_elems += cfg.q_dim + 2 * cfg.kv_dim if not is_latent(cfg) else _latent_biases(cfg)
    if cfg.out_bias:
        bias_elems += d
    if cfg.mlp_bias:
        bias_elems += (2 if cfg.is_glu else 1) * cfg.d_ff + d
    if is_latent(cfg):  # the norms over the q and kv latents
        norms += layers * tokens * per_norm * (cfg.kv_lora_rank + (cfg.q_lora_rank or 0))
    # activations: each dense layer's d_ff, each MoE layer's k routed and its shared widths
    hidden = dense_layer_count(cfg) * cfg.d_ff
    if cfg.n_experts:
        routed = cfg.experts_per_token * cfg.d_ff_expert
        hidden += moe_layer_count(cfg) * (routed + (cfg.d_ff_shared or 0))
    rope_heads = cfg.n_heads + (1 if is_latent(cfg) else cfg.n_kv_heads)
    result = {
        "norms": norms,
        "softmax": layers * 5 * batch * cfg.n_heads * seq * seq,
        "activation": tokens * hidden * (2 if cfg.is_glu else per_activation),
        "bias_adds": layers * tokens * bias_elems
        + (tokens * cfg.vocab_size if cfg.lm_head_bias else 0),
        "residual_adds": layers * tokens * 2 * d,  # attention and MLP outputs join x
        "rope": layers * tokens * 3 * rope_heads * cfg.rotary_dim if cfg.position == "rope" else 0,
    }
    if cfg.n_experts:  # scores (5 per logit, as softmax), weighting and summing k rows
        k, moe_layers = cfg.experts_per_token, moe_layer_count(cfg)
        result["routing"] = moe_layers * tokens * (5 * cfg.n_experts + 2 * k * d)
    if cfg.position in ("learned", "sinusoidal"):
        result["position_add"] = tokens * d
    if cfg.scale_embeddings:
        result["embedding_scale"] = tokens * d
    if cfg.attn_softcap is not None or cfg.logit_softcap is not None:  # divide, tanh, multiply
        scores = layers * batch * cfg.n_heads * seq * seq if cfg.attn_softcap is not None else 0
        logits = tokens * cfg.vocab_size if cfg.logit_softcap is not None else 0
        result["softcap"] = 3 * (scores + logits)
    multiplied = 0
    if cfg.embedding_multiplier is not None:
        multiplied += tokens * d
    if cfg.residual_multiplier is not None:  # each branch, or a parallel block's sum of both
        multiplied += layers * tokens * d * (2 if cfg.block == "serial" else 1)
    if cfg.logit_scale is not None:
        multiplied += tokens * cfg.vocab_size
    if multiplied:
        result["multipliers"] = multiplied
    return result


def _latent_biases(cfg: ModelConfig) -> int:
    """qkv_bias under latent attention: on the q and kv latents' projections (q_a, kv_a)."""
    return (cfg.q_lora_rank or 0) + cfg.kv_lora_rank + cfg.qk_rope_head_dim


def forward_flops(cfg: ModelConfig, batch: int, seq: int) -> ForwardFlops:
    matmul = matmul_flops(cfg, batch, seq)
    per_pair = pair_flops(cfg, batch)  # scores and values of one query-key pair
    causal = cfg.n_layers * per_pair * causal_pairs(seq)
    local, windowed = local_layer_count(cfg), None
    if local:
        pairs = (cfg.n_layers - local) * causal_pairs(seq)
        windowed = per_pair * (pairs + local * windowed_pairs(cfg.sliding_window, seq))
    non_matmul = non_matmul_flops(cfg, batch, seq)
    return ForwardFlops(batch, seq, matmul, causal, non_matmul, windowed)


# --- training step --------------------------------------------------------------------------


@dataclass(frozen=True)
class StepFlops:
    forward: int  # matmul FLOPs (the exact, comparable part)
    backward: int
    recompute: int  # every block's forward again under full recomputation (hardware FLOPs)
    recompute_early_stop: int  # the same with torch.utils.checkpoint's default early stop

    @property
    def model(self) -> int:
        return self.forward + self.backward

    @property
    def hardware(self) -> int:
        return self.model + self.recompute

    @property
    def hardware_early_stop(self) -> int:
        return self.model + self.recompute_early_stop


def step_flops(
    cfg: ModelConfig, forward: ForwardFlops, recompute: str, causal: bool = False
) -> StepFlops:
    """Forward, backward and the recomputed forward of the blocks (the model wraps each block in
    torch.utils.checkpoint; Megatron-LM's full recomputation does the same)."""
    matmul = forward.matmul_total_causal if causal else forward.matmul_total
    if recompute != "full":
        return StepFlops(matmul, 2 * matmul, 0, 0)
    blocks = matmul - forward.matmul["lm_head"]
    return StepFlops(matmul, 2 * matmul, blocks, blocks - _early_stop_skips(cfg, forward))


def _early_stop_skips(cfg: ModelConfig, forward: ForwardFlops) -> int:
    """Matmuls an early-stopping rerun leaves out: a pre-norm block's last matmul, the MLP output
    projection, whose output no later op of the block saves (only the residual add uses it).
    With post, sandwich or output norms a norm saves that output, so the rerun goes to the end."""
    if cfg.norm_position != "pre":
        return 0
    tokens = forward.batch * forward.seq
    skipped = dense_layer_count(cfg) * 2 * tokens * cfg.d_ff * cfg.d_model
    # an MoE layer ends in the routed output weighted (saved) or the shared experts: their
    # down projection is skipped unless a gate multiplies (and saves) it
    if cfg.n_shared_experts and not cfg.shared_expert_gate:
        skipped += moe_layer_count(cfg) * 2 * tokens * cfg.d_ff_shared * cfg.d_model
    return skipped


# --- inference ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrefillFlops:
    """Forward matmul FLOPs of a prefill of `batch` sequences of `seq` tokens (full T×T
    attention), with the LM head two ways."""

    batch: int
    seq: int
    all_logits: int  # the LM head at every position: a plain forward, as training runs it
    last_logits: int  # at the last position only: logits_to_keep=1, as transformers' generate

    @property
    def lm_head_saved(self) -> int:
        return self.all_logits - self.last_logits


def prefill_flops(cfg: ModelConfig, batch: int, seq: int) -> PrefillFlops:
    matmul = matmul_flops(cfg, batch, seq)
    every = sum(matmul.values())
    last = every - matmul["lm_head"] + matmul_flops(cfg, batch, 1)["lm_head"]
    return PrefillFlops(batch, seq, every, last)


def decode_flops(cfg: ModelConfig, position: int, batch: int = 1) -> int:
    """Matmul FLOPs to generate the token at 0-based `position` in each of `batch` sequences:
    one new query per sequence attending over position + 1 keys (the cached ones and its own)."""
    return sum(matmul_flops(cfg, batch, 1, keys=position + 1).values())

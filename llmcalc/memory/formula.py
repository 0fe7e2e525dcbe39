"""Closed-form memory in exact bytes: KV cache, training (weights, gradients, optimizer state,
activations, logits and loss buffers, phase by phase) and inference. No torch here.

The activations a step keeps, tensor by tensor, are in activations.py. Symbols: n = B·T tokens,
a bytes per activation element (4 in fp32, 2 in bf16 and mixed), d d_model, f d_ff, V vocab_size.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.experts import is_latent
from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import cached_positions, local_layer_count
from llmcalc.errors import LLMCalcError
from llmcalc.memory.activations import block_backward_peak, head_activations, layer_activations
from llmcalc.memory.experts import (
    buffer_bytes,
    candidate_layers,
    layer_kind,
    layer_kinds,
)
from llmcalc.memory.latent import (
    HEAD_AFTER_BLOCKS,
    kv_elements,
    latent_takes_math_path,
    math_path_forward_moment,
    unmodelled,
)
from llmcalc.memory.parameters import block_sizes, conversion_excess, parameter_groups
from llmcalc.memory.transients import attention_transient, block_transient, mlp_transient
from llmcalc.params.formula import param_formula

PRECISIONS = ("fp32", "bf16", "mixed")
OPTIMIZERS = ("adamw", "sgd", "sgd-momentum")
CHECKPOINTING = ("none", "full")
# sdpa: torch's fused kernel; eager: written out; math: SDPA's math path (the scores and
# probabilities materialised), what torch runs when no fused kernel takes the call
ATTENTION_IMPLS = ("sdpa", "eager", "math")
CATEGORIES = ("weights", "gradients", "optimizer", "activations", "other")  # of training memory


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of each model state (ZeRO, Rajbhandari et al. 2020, section 3.1;
    Megatron-LM's distributed optimizer notes for bf16 weights with fp32 gradients)."""

    weight: int
    grad: int  # as the backward pass makes them
    step_grad: int  # as the optimizer reads them
    state: int  # each optimizer state tensor
    master: int  # fp32 copy of the weights (mixed precision)
    activation: int


PRECISION = {
    "fp32": Precision(weight=4, grad=4, step_grad=4, state=4, master=0, activation=4),
    "bf16": Precision(weight=2, grad=2, step_grad=2, state=2, master=0, activation=2),
    "mixed": Precision(weight=2, grad=2, step_grad=4, state=4, master=4, activation=2),
}
STATE_TENSORS = {"adamw": 2, "sgd": 0, "sgd-momentum": 1}  # AdamW: exp_avg and exp_avg_sq


# --- KV cache --------------------------------------------------------------------------------


def kv_cache_bytes(
    cfg: ModelConfig, batch: int, seq: int, dtype_bytes: int, form: str = "latent"
) -> int:
    """Keys and values of every layer: 2 · h_kv · d_h · B · bytes · Σ positions held (Pope et al.
    2022, 'Efficiently Scaling Transformer Inference', section 3.1): T in a global layer, and in a
    local layer (sliding window W) min(T, W − 1), what transformers' sliding cache keeps. GQA and
    MQA shrink it by storing h_kv < h heads (Ainslie et al. 2023; Shazeer 2019). With latent
    attention 2 · h_kv · d_h becomes kv_lora_rank + qk_rope_head_dim (the latent and the shared
    RoPE key, DeepSeek-V2 section 2.1.2), or with form 'decompressed' the per-head keys and
    values, h · (qk_nope_head_dim + qk_rope_head_dim + v_head_dim) (memory/latent.py)."""
    local = local_layer_count(cfg)
    positions = (cfg.n_layers - local) * seq
    if local:
        positions += local * cached_positions(cfg, True, seq)
    return kv_elements(cfg, form) * positions * batch * dtype_bytes


def with_kv_heads(cfg: ModelConfig, n_kv_heads: int) -> ModelConfig:
    """The same model with another number of KV heads (MHA, GQA or MQA)."""
    return cfg.replace(n_kv_heads=n_kv_heads, name=f"{cfg.name} ({n_kv_heads} kv heads)")


def default_gqa_groups(cfg: ModelConfig) -> int | None:
    """KV heads for the GQA column when none is asked for: the preset's own if it is GQA, else
    the largest divisor of n_heads up to 8 that is neither 1 nor n_heads (None if there is none)."""
    if 1 < cfg.n_kv_heads < cfg.n_heads:
        return cfg.n_kv_heads
    divisors = [g for g in range(2, min(8, cfg.n_heads - 1) + 1) if cfg.n_heads % g == 0]
    return max(divisors) if divisors else None


# --- training: model states, activations, and the peak phase by phase -------------------------


@dataclass(frozen=True)
class Phase:
    total: int
    categories: dict[str, int]  # weights, gradients, optimizer, activations, other
    at: str  # the moment of this phase's peak, in words
    layer: int | None = None  # the block running at that moment, if one is


@dataclass(frozen=True)
class TrainingMemory:
    weights: int
    gradients: int  # at the optimizer step (fp32 in mixed precision)
    optimizer: int
    activations: int  # kept for backward at the end of the forward pass
    logits: int  # logits and loss buffers at their largest (start of the backward pass)
    phases: dict[str, Phase]
    moments: tuple[Phase, ...] = ()  # every moment that can peak, of every phase, in step order

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda phase: self.phases[phase].total)

    @property
    def peak(self) -> int:
        return self.phases[self.peak_phase].total


def _phase(at: str, buffers: int = 0, layer: int | None = None, **categories: int) -> Phase:
    """A phase's categories; `buffers` (the model's, not parameters) join 'other'."""
    full = dict.fromkeys(CATEGORIES, 0)
    full.update(categories)
    full["other"] += buffers
    return Phase(sum(full.values()), full, at, layer)


def training_memory(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    attention: str = "sdpa",
) -> TrainingMemory:
    """Predicted memory of one steady-state training step (optimizer state already created)."""
    p = PRECISION[precision]
    n, a, vocab, d, layers = batch * seq, p.activation, cfg.vocab_size, cfg.d_model, cfg.n_layers
    groups = parameter_groups(cfg)
    n_params = sum(sum(sizes) * times for sizes, times in groups)
    components = param_formula(cfg).components
    weights = n_params * p.weight
    n_tensors = sum(len(sizes) * times for sizes, times in groups)
    step_counters = 4 * n_tensors if optimizer == "adamw" else 0  # fused AdamW: fp32 scalars
    optimizer_bytes = STATE_TENSORS[optimizer] * n_params * p.state + step_counters
    optimizer_bytes += n_params * p.master
    states = {
        "weights": weights,
        "optimizer": optimizer_bytes,
        "buffers": buffer_bytes(cfg, p.weight),
    }

    # what a block keeps, by kind: (local (sliding window) or global, MoE or dense)
    kinds = layer_kinds(cfg)
    last = layer_kind(cfg, layers - 1)
    saved_by_kind = {
        kind: layer_activations(cfg, batch, seq, a, attention, *kind) for kind in kinds
    }
    per_layer = {kind: sum(saved.values()) for kind, saved in saved_by_kind.items()}
    if checkpointing == "full":  # a block's input only
        kept_all = layers * n * d * a
    else:
        kept_all = sum(count * per_layer[kind] for kind, count in kinds.items())
    head = head_activations(cfg, batch, seq, a)
    # RoPE's cos and sin live until the first block's backward: saved by every block, or under
    # checkpointing held as the blocks' inputs (alive, but not saved by autograd: "other")
    rope = head.get("rope_tables", 0)
    rope_saved, rope_held = (0, rope) if checkpointing == "full" else (rope, 0)
    activations = kept_all + sum(head.values()) - rope_held
    embedding_inputs = head["tokens"] + head.get("position_ids", 0) + head["targets"]
    batch_ids = head["tokens"] + head["targets"]  # held by the training loop all step
    logits = n * vocab * a
    fp32_logits = n * vocab * 4 if a != 4 else 0  # cross-entropy runs in fp32

    loss = 4  # the fp32 loss itself
    # forward's local variable holds the last hidden state; counted already where the final
    # norm saves it, not where it saves a copy (RMSNorm or an fp32 LayerNorm in bf16) or only
    # what it computes from it (an op-by-op LayerNorm)
    ops = cfg.norm == "layernorm" and cfg.layernorm_compute == "ops"
    fp32_copy = cfg.norm == "rmsnorm" or cfg.layernorm_compute == "fp32"
    unsaved_hidden = cfg.final_norm and (ops or (fp32_copy and a != 4))
    hidden = n * d * a if unsaved_hidden else 0
    forward = _phase(
        "log-softmax",
        **states,
        activations=activations,
        other=logits + fp32_logits + loss + hidden + rope_held,
    )
    if checkpointing == "none" and is_latent(cfg) and latent_takes_math_path(cfg, attention):
        # the last block's math-path attention can outgrow the end of the forward
        before = sum(v for k, v in head.items() if not k.startswith(HEAD_AFTER_BLOCKS))
        moment = math_path_forward_moment(cfg, batch, seq, a, attention, saved_by_kind[last])
        in_attention = _phase(
            "last block attention",
            **states,
            other=before + kept_all - per_layer[last] + moment,
        )
        forward = max(forward, in_attention, key=lambda ph: ph.total)
    forward_moments = [forward]
    if checkpointing == "full":  # a block runs as in inference first, keeping only its input
        refuse_unmodelled(cfg, checkpointing, attention)
        for layer in candidate_layers(cfg):  # the last layer of each kind holds the most
            moe = layer_kind(cfg, layer)[1]
            transient = block_transient(cfg, batch, seq, a, moe, False, attention)
            at = "last block" if layer == layers - 1 else f"block {layer}"
            block_forward = _phase(
                f"{at} forward",
                layer=layer,
                **states,
                activations=batch_ids + (layer + 1) * n * d * a,
                other=transient - n * d * a + rope,
            )
            forward_moments.append(block_forward)
            forward = max(forward, block_forward, key=lambda ph: ph.total)
    # The backward pass, from the loss: the log-softmax's gradient and its input's (n·V fp32
    # each) while everything saved is alive; then the LM head's: the logits' gradient, the
    # hidden state's and the head weight's.
    head_weight_grad = vocab * d * p.grad
    loss_grads = _phase(
        "log-softmax backward",
        **states,
        activations=activations,
        other=2 * n * vocab * 4 + rope_held,
    )
    head_backward = _phase(
        "LM head backward",
        **states,
        gradients=head_weight_grad,
        activations=activations - head["log_softmax"],
        other=logits + n * d * a + rope_held,
    )
    # Then block by block, last to first: one block's activations go and its gradients come
    # (candidate_layers: where this can peak).
    tied_weight_grad = head_weight_grad if cfg.tie_embeddings else 0
    head_grads = (components["final_norm"] + components["lm_head"]) * p.grad + tied_weight_grad
    layer_grads = n_params - components["token_embedding"] - components["position_embedding"]
    layer_grads = (layer_grads - components["final_norm"] - components["lm_head"]) * p.grad

    # inside a block: its saved tensors (recomputed first with checkpointing) and gradients
    def in_block(kind: tuple[bool, bool]) -> int:
        peak = block_backward_peak(cfg, batch, seq, a, attention, saved_by_kind[kind])
        return peak - (0 if checkpointing == "full" else per_layer[kind])  # counted as kept

    # a tied head's gradient is held by autograd until the embedding's is added to it
    held = head_weight_grad if cfg.tie_embeddings else 0
    sizes = {moe: sum(block) for moe, block in block_sizes(cfg).items()}

    def block_backward(layer: int) -> Phase:
        """Layer `layer`'s backward: the gradients of the layers after it, the saved tensors
        of those up to it (with checkpointing, their inputs) and its own peak."""
        upto = layer_kinds(cfg, layer)
        done = sum(count * sizes[moe] for (_, moe), count in upto.items()) * p.grad
        if checkpointing == "full":
            kept = (layer + 1) * n * d * a
        else:
            kept = sum(count * per_layer[kind] for kind, count in upto.items())
        at = {layers - 1: "last block", 0: "first block"}.get(layer, f"block {layer}")
        return _phase(
            f"{at} backward",
            layer=layer,
            **states,
            gradients=head_grads - held + layer_grads - done,
            activations=embedding_inputs + kept + rope_saved,
            other=in_block(layer_kind(cfg, layer)) + held + rope_held,
        )

    # Last, the embeddings: a dense V x d gradient; a tied one is added to the head's (both
    # and their sum alive at once) before it becomes the parameter's gradient.
    embedding_grads = (components["token_embedding"] + components["position_embedding"]) * p.grad
    tied_sum = vocab * d * p.grad if cfg.tie_embeddings else 0
    embeddings = _phase(
        "embedding backward",
        **states,
        gradients=head_grads + layer_grads + embedding_grads - 2 * tied_sum,
        activations=embedding_inputs,
        other=3 * tied_sum,
    )
    blocks = [block_backward(layer) for layer in candidate_layers(cfg)]
    backward = max(loss_grads, head_backward, *blocks, embeddings, key=lambda ph: ph.total)

    gradients = n_params * p.step_grad
    conversion = conversion_excess(groups) if precision == "mixed" else 0
    step = _phase(
        "optimizer step",
        **states,
        gradients=gradients,
        activations=batch_ids,
        other=conversion,
    )
    return TrainingMemory(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer_bytes,
        activations=activations,
        logits=2 * n * vocab * 4,
        phases={"forward": forward, "backward": backward, "optimizer": step},
        moments=(*forward_moments, loss_grads, head_backward, *blocks, embeddings, step),
    )


# --- inference: weights, KV cache, and the transient tensors of a prefill ----------------------


@dataclass(frozen=True)
class InferenceMemory:
    weights: int
    kv_cache: int
    activations: int  # transient tensors of the prefill at their largest
    at: str

    @property
    def peak(self) -> int:
        return self.weights + self.kv_cache + self.activations


def refuse_unmodelled(cfg: ModelConfig, *setup: str) -> None:
    missing = unmodelled(cfg, *setup)
    if missing is not None:
        raise LLMCalcError(f"memory: {cfg.name}: {missing} is not modelled yet")


def prefill_transient(cfg: ModelConfig, batch: int, seq: int, a: int) -> tuple[int, str]:
    """Largest set of live intermediate tensors in a prefill without autograd: in a block, the
    block's input and mid-stream residual, a norm's output and the MLP's hidden tensors (three
    of n·f while a GLU multiplies; an MoE layer's in memory/experts.py); latent attention's
    (memory/latent.py); at the end, the last hidden state, the final norm's output and the
    logits (n·V), and with a logit_scale the scaled logits beside the logits (the final norm's
    output gone by then). RoPE's cos and sin are alive throughout."""
    refuse_unmodelled(cfg)
    n, d = batch * seq, cfg.d_model
    rope = 2 * seq * cfg.rotary_dim * a if cfg.position == "rope" else 0
    logits = 2 * n * d * a + n * cfg.vocab_size * a
    if cfg.logit_scale is not None:
        logits = max(logits, n * d * a + 2 * n * cfg.vocab_size * a)
    candidates = [(logits, "logits")]
    for moe in {moe for _, moe in layer_kinds(cfg)}:
        at = "MoE MLP of a block" if moe else "MLP of a block"
        candidates.append((mlp_transient(cfg, batch, seq, a, moe), at))
    if cfg.attention_sinks or is_latent(cfg):
        at = "attention with sinks" if cfg.attention_sinks else "latent attention"
        candidates.append((attention_transient(cfg, batch, seq, a, True), at))
    return max((size + rope, at) for size, at in candidates)


def inference_memory(
    cfg: ModelConfig, batch: int, seq: int, dtype_bytes: int, kv_bytes: int
) -> InferenceMemory:
    """Weights (and buffers) + a KV cache of `seq` tokens for `batch` sequences + the prefill's
    transients."""
    weights = sum(sum(sizes) * times for sizes, times in parameter_groups(cfg)) * dtype_bytes
    weights += buffer_bytes(cfg, dtype_bytes)
    transient, at = prefill_transient(cfg, batch, seq, dtype_bytes)
    return InferenceMemory(weights, kv_cache_bytes(cfg, batch, seq, kv_bytes), transient, at)

"""One moment of a rank's step with its share of the model states under ZeRO and the buffers of
torch's data parallelism alive then. No torch.

FSDP2 (fully_shard, ZeRO-2 and 3; replicate_with_fsdp, ZeRO 0 and 1) makes one unit of each
block and one of the root (embeddings, final norm, LM head), as torchtitan wraps a model:
    ZeRO-3  reshard_after_forward=True: the root stays gathered from its forward to the end of the
            backward; a block is gathered for its forward and again for its backward. FSDP2 keeps
            each all-gather's flat output until the next all-gather is issued, and in the backward
            prefetches the next block's all-gather (its flat output and its sharded input).
    ZeRO-2  reshard_after_forward=False: every block stays gathered from its forward to the end
            of its backward. replicate_with_fsdp (ZeRO 0 and 1) does the same with unsharded
            copies of the replicated weights.
Under mixed precision FSDP2 keeps the sharded weights in fp32 (they are the master weights) and
gathers them in bf16 (MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32)).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmcalc.config.experts import moe_layer_count
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.formula import PRECISION, STATE_TENSORS, Phase, Precision
from llmcalc.memory.parameters import block_sizes, parameter_groups
from llmcalc.parallel.expert import expert_elements, parameters_per_rank
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.states import partitioned
from llmcalc.parallel.tensor import chunk

CATEGORIES = ("weights", "gradients", "optimizer", "activations", "buffers", "other")


@dataclass(frozen=True)
class RankMemory:
    categories: dict[str, int]  # CATEGORIES -> bytes at this rank's peak
    at: str  # the moment of the peak, in words
    host: int = 0  # bytes offloaded to the host (not on the GPU)

    @property
    def peak(self) -> int:
        return sum(self.categories.values())


@dataclass(frozen=True)
class Units:
    """Elements of the FSDP units: the root (embeddings, final norm, LM head) and the blocks."""

    root: int
    block: int  # the largest block
    blocks: int  # all blocks together
    head: int  # the root's part after the blocks (final norm, LM head)
    layers: int
    moe_layers: int


def fsdp_units(cfg: ModelConfig, pad: int = 1) -> Units:
    """The units' elements; with `pad` (the shard group), as FSDP2 pads them for its
    collectives: each tensor's first dimension to a multiple of the group."""
    groups = parameter_groups(cfg, pad)
    head = sum(groups[-1][0])
    sizes = [sum(block) for block in block_sizes(cfg, pad).values() if block]
    blocks = sum(sum(s) * times for s, times in groups[1:-1])
    return Units(
        sum(groups[0][0]) + head, max(sizes), blocks, head, cfg.n_layers, moe_layer_count(cfg)
    )


def rank_moment(
    cfg: ModelConfig,
    local_cfg: ModelConfig,
    layout: Layout,
    moment: Phase,
    precision: str,
    optimizer: str,
) -> RankMemory:
    """`moment` of the rank's one-GPU step with the model states it holds under the layout."""
    p = PRECISION[precision]
    zero, ranks = layout.zero, layout.shard_group
    units = fsdp_units(local_cfg)
    n_params = units.root + units.blocks
    # expert parallelism over every data rank: the rank's own experts are neither sharded nor
    # gathered by data parallelism (FSDP2's ignored_params); the rest is
    experts = local_experts(local_cfg) if layout.ep > 1 else 0
    # FSDP2 pads each tensor's first dimension to a multiple of the shard group: rank 0 holds
    # padded/ranks of what data parallelism shards (the short or empty chunks are the last ranks')
    share = local_cfg.replace(n_experts=cfg.n_experts) if layout.ep > 1 else local_cfg
    padded_units = fsdp_units(share, pad=ranks)
    sharded = padded_units.root + padded_units.blocks
    sharded -= local_experts(share, pad=ranks) if layout.ep > 1 else 0

    def split(total: int, per_element: int) -> int:
        """The rank's part of `total` bytes, `per_element` bytes per parameter element: its
        padded shard, its own experts whole, and what is per tensor (step counters) whole."""
        per_tensor = total - n_params * per_element
        return sharded // ranks * per_element + experts * per_element + per_tensor

    cats = moment.categories
    weights, grads, states = cats["weights"], cats["gradients"], cats["optimizer"]
    at = moment.at
    if layout.ep > 1:  # the router's E logits where the one-GPU model of the share has E/ep
        delta = parameters_per_rank(cfg, layout.ep) - n_params
        n_params += delta
        weights += delta * p.weight
        states += delta * (STATE_TENSORS[optimizer] * p.state + p.master)
        if at in ("optimizer step", "embedding backward"):
            grads += delta * (p.step_grad if at == "optimizer step" else p.grad)
    fsdp_master = zero >= 2 and precision == "mixed"
    if fsdp_master:  # FSDP2: the fp32 shard is the master copy
        weights, states = n_params * p.master, states - n_params * p.master
    if zero >= 2:  # FSDP2 keeps the weights sharded, gathering them into buffers
        weights = split(weights, p.master if fsdp_master else p.weight)
    if zero >= 1:
        per_state = STATE_TENSORS[optimizer] * p.state + (0 if fsdp_master else p.master)
        states = split(states, per_state)
    host = 0
    if layout.offload != "none":
        host, states = states, 0
        if layout.offload == "params":
            host, weights = host + weights, 0
    if zero >= 2:
        if at == "optimizer step":
            grads = split(n_params * p.step_grad, p.step_grad)
        elif moment.layer is not None or at == "embedding backward":
            # the root's gradients stay whole until its reduce-scatter, at the very end
            root = units.head if moment.layer is not None else units.root
            root = min(grads, root * p.grad)
            grads = root + partitioned(grads - root, ranks)
    whole_embedding, its_shard = _replicated_embedding_grad(cfg, layout, at, p, zero)
    grads += whole_embedding
    if layout.offload == "params" and at == "optimizer step":
        host, grads = host + grads, 0
    # what data parallelism gathers: FSDP2's padded tensors (ZeRO 2, 3), replicate's whole ones
    units = padded_units if zero >= 2 else fsdp_units(share)
    if layout.ep > 1:  # but never the experts
        left = local_experts(share, pad=ranks if zero >= 2 else 1)
        block = units.block - left // units.moe_layers
        units = replace(units, block=block, blocks=units.blocks - left)
    buffers = fsdp_buffers(moment, units, p.weight, zero, ranks, fsdp_master)
    categories = {
        "weights": weights,
        "gradients": grads,
        "optimizer": states,
        "activations": cats["activations"],
        "buffers": buffers,
        "other": cats["other"] + its_shard,
    }
    return RankMemory(categories, at, host)


def _replicated_embedding_grad(
    cfg: ModelConfig, layout: Layout, at: str, p: Precision, zero: int
) -> tuple[int, int]:
    """Tensor parallelism: torch's DTensor makes the vocabulary-parallel embedding's gradient
    whole on every rank (parallel/tensor.py: rank_gradient_elements), from its backward to the
    step (to its reduce-scatter under FSDP2), where the optimizer takes the rank's shard of it as
    a copy; the one-GPU model of the rank's share has 1/t. Returns (gradient, copy) bytes."""
    if layout.tp == 1 or cfg.tie_embeddings:
        return 0, 0
    shard = chunk(cfg.vocab_size, layout.tp) * cfg.d_model
    extra = cfg.vocab_size * cfg.d_model - shard
    if at == "embedding backward":
        return extra * p.grad, 0
    if at == "optimizer step" and zero < 2:
        return extra * p.step_grad, shard * p.step_grad
    return 0, 0


def local_experts(local_cfg: ModelConfig, pad: int = 1) -> int:
    """Elements of the routed experts of `local_cfg` (a rank.s E/ep, or all E) over its MoE layers; with
    `pad`, the expert dimension padded as in fsdp_units."""
    rows = -(-local_cfg.n_experts // pad) * pad
    return moe_layer_count(local_cfg) * rows * expert_elements(local_cfg)


def fsdp_buffers(
    moment: Phase, units: Units, w: int, zero: int, ranks: int, cast: bool = False
) -> int:
    """FSDP2's gathered parameters and all-gather buffers alive at a moment of the step;
    `cast`: mixed precision, where the all-gather casts the fp32 shard to bf16 first and a
    block's backward keeps one more all-gather (its flat output and input) in flight."""
    at = moment.at
    if ranks == 1 or at == "optimizer step":
        return 0
    root, block = units.root * w, units.block * w
    if zero <= 2:  # replicate_with_fsdp (ZeRO 0, 1) keeps its copies as ZeRO-2 its gathers
        return _zero2_buffers(moment, units, w)
    if at == "log-softmax":  # end of the forward: the root gathered, the last flat output kept
        return root + block
    if "forward" in at:  # a checkpointed block's forward
        return root + 3 * block
    if moment.layer is not None:  # a block's backward: it, its flat output, the prefetch
        in_flight = 2 if cast else 1
        prefetch = in_flight * (block + partitioned(block, ranks)) if moment.layer > 0 else 0
        return root + 2 * block + prefetch
    return root + block


def _zero2_buffers(moment: Phase, units: Units, w: int) -> int:
    """ZeRO-2: the blocks gathered in the forward stay until their backward ends; block i's
    backward holds blocks 0..i (and the root). The last all-gather's flat output is kept through
    the forward, and gone once the backward has begun."""
    blocks = units.blocks
    if moment.at == "embedding backward":  # every block's backward is over
        blocks = 0
    elif moment.layer is not None and "backward" in moment.at:
        blocks = blocks * (moment.layer + 1) // units.layers
    flat = 0 if "backward" in moment.at else units.block
    return (units.root + blocks + flat) * w

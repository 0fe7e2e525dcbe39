"""Predicted memory per GPU under a layout (parallel/layout.py), in exact bytes where the step is
exact and with FSDP2's buffers as torch allocates them. No torch.

The single-GPU step (memory/formula.py) is computed moment by moment on what one rank runs (its
micro-batch, its share of the sequence and of each tensor); each moment's model states are then
replaced by the rank's share (parallel/states.py) and the communication buffers alive at that
moment are added:

    ZeRO-3  FSDP2 fully_shard(reshard_after_forward=True): the root unit (embeddings, final norm,
            LM head) stays gathered from its forward to the end of the backward; a block is
            gathered for its forward and again for its backward, while the next block's all-gather
            is prefetched; FSDP2 keeps each all-gather's flat output until the next one is issued.
    ZeRO-2  fully_shard(reshard_after_forward=False): blocks stay gathered from their forward to
            their backward.
    ZeRO-1  gradients all-reduced in full; each rank steps its shard of the optimizer state, then
            the updated weights are all-gathered.
    ZeRO-0  plain data parallelism: gradients all-reduced in full, everything replicated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.formula import PRECISION, Phase, training_memory
from llmcalc.memory.parameters import block_sizes, parameter_groups
from llmcalc.parallel.layout import Layout, check_layout
from llmcalc.parallel.states import partitioned

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
class ParallelMemory:
    layout: Layout
    ranks: dict[str, RankMemory]  # rank kind -> its memory
    single: int = 0  # the same step's peak on one GPU
    notes: list[str] = field(default_factory=list)

    @property
    def peak_rank(self) -> str:
        return max(self.ranks, key=lambda kind: self.ranks[kind].peak)

    @property
    def peak(self) -> int:
        return self.ranks[self.peak_rank].peak


@dataclass(frozen=True)
class Units:
    """Elements of the FSDP units: the root (embeddings, final norm, LM head) and each block."""

    root: int
    block: int  # the largest block
    blocks: int  # all blocks together


def fsdp_units(cfg: ModelConfig) -> Units:
    groups = parameter_groups(cfg)
    root = sum(groups[0][0]) + sum(groups[-1][0])
    sizes = {moe: sum(block) for moe, block in block_sizes(cfg).items() if block}
    blocks = sum(sum(s) * times for s, times in groups[1:-1])
    return Units(root, max(sizes.values()), blocks)


def parallel_memory(
    cfg: ModelConfig,
    layout: Layout,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    attention: str = "sdpa",
) -> ParallelMemory:
    """Per-GPU memory of one training step under `layout`; `batch` is the micro-batch."""
    check_layout(cfg, layout, seq)
    single = training_memory(cfg, batch, seq, precision, optimizer, checkpointing, attention)
    local = training_memory(
        cfg, batch, seq // layout.cp, precision, optimizer, checkpointing, attention
    )
    kind = "every rank"
    moments = [_sharded(cfg, layout, moment, precision, optimizer) for moment in local.moments]
    top = max(moments, key=lambda m: sum(m[0].values()))
    return ParallelMemory(layout, {kind: RankMemory(top[0], top[1], top[2])}, single.peak)


def _sharded(
    cfg: ModelConfig, layout: Layout, moment: Phase, precision: str, optimizer: str
) -> tuple[dict[str, int], str, int]:
    """One moment of the local step with the rank's model states and FSDP2's buffers."""
    p = PRECISION[precision]
    zero, ranks = layout.zero, layout.shard_group
    units = fsdp_units(cfg)
    n_params = units.root + units.blocks
    cats = moment.categories
    weights = n_params * p.weight
    optimizer_bytes = cats["optimizer"]
    host = 0
    if zero >= 1:
        optimizer_bytes = partitioned(optimizer_bytes, ranks)
    if layout.offload in ("optimizer", "params"):
        host, optimizer_bytes = optimizer_bytes, 0
    grads = cats["gradients"]
    buffers = 0
    w = p.weight
    phase = moment.at
    if zero >= 2:
        if phase == "optimizer step":
            grads = partitioned(n_params * p.step_grad, ranks)
        elif moment.layer is not None or phase == "embedding backward":
            # the root's gradients stay whole until its reduce-scatter, at the very end
            root = min(grads, _root_grads(cfg, phase == "embedding backward") * p.grad)
            grads = root + partitioned(grads - root, ranks)
    if zero == 3:
        weights = partitioned(weights, ranks)
        buffers = _zero3_buffers(moment, units, w, ranks)
    return (
        {
            "weights": weights,
            "gradients": grads,
            "optimizer": optimizer_bytes,
            "activations": cats["activations"],
            "buffers": buffers,
            "other": cats["other"],
        },
        phase,
        host,
    )


def _root_grads(cfg: ModelConfig, with_embeddings: bool) -> int:
    groups = parameter_groups(cfg)
    return sum(groups[-1][0]) + (sum(groups[0][0]) if with_embeddings else 0)


def _zero3_buffers(moment: Phase, units: Units, w: int, ranks: int) -> int:
    """FSDP2's gathered parameters and all-gather buffers alive at a moment of the step."""
    at = moment.at
    if at == "optimizer step":
        return 0
    root, block = units.root * w, units.block * w
    if at == "log-softmax":  # end of the forward: the root gathered, the last flat output kept
        return root + block
    if "forward" in at:  # a checkpointed block's forward
        return root + 3 * block
    if moment.layer is not None:  # a block's backward: it, its flat output, the prefetch
        prefetch = block + partitioned(block, ranks) if moment.layer > 0 else 0
        return root + 2 * block + prefetch
    return root + block

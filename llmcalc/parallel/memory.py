"""Predicted memory per GPU under a layout (parallel/layout.py). No torch.

The single-GPU step (memory/formula.py), exact moment by moment, is computed on what one rank
runs: its micro-batch, its T/cp share of the sequence (context parallelism) and its share of
each layer (tensor parallelism: parallel/tensor.py's local_config, heads/t, d_ff/t and the
vocabulary-parallel ceil(V/t) rows of the embedding and head). What that one-GPU model does not
keep the way the parallel one does is then added per layer kept: sequence parallelism's 1/t
norms and whole all-gathered linear inputs, context parallelism's gathered keys and values
(parallel/context.py). Last, each moment's model states become the rank's share under ZeRO
(parallel/states.py) and FSDP2's buffers alive at that moment join (parallel/buffers.py).

Context-parallel ranks differ: rank r attends to (r + 1)·T/cp keys, so the first and the last
are shown, the last being the peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.activations import head_activations, layer_activations
from llmcalc.memory.formula import PRECISION, Phase, training_memory
from llmcalc.parallel.buffers import RankMemory, rank_moment
from llmcalc.parallel.context import check_context, context_layer_activations
from llmcalc.parallel.layout import Layout, check_layout
from llmcalc.parallel.tensor import (
    check_tensor_parallel,
    chunk,
    head_activations_tp,
    layer_activations_tp,
    local_config,
)


@dataclass(frozen=True)
class ParallelMemory:
    layout: Layout
    ranks: dict[str, RankMemory]  # rank kind -> its memory
    single: int  # the same micro-batch's peak on one GPU
    notes: list[str] = field(default_factory=list)

    @property
    def peak_rank(self) -> str:
        return max(self.ranks, key=lambda kind: self.ranks[kind].peak)

    @property
    def peak(self) -> int:
        return self.ranks[self.peak_rank].peak


def check_parallel(cfg: ModelConfig, layout: Layout, seq: int, attention: str = "sdpa") -> None:
    """Every refusal of the layout, the tensor- and the context-parallel closed forms."""
    check_layout(cfg, layout, seq)
    if layout.tp > 1:
        check_tensor_parallel(cfg, layout.tp, layout.sp, seq)
    if layout.cp > 1:
        check_context(cfg, seq, layout.cp, attention)


def rank_config(cfg: ModelConfig, layout: Layout) -> ModelConfig:
    """The model as one tensor-parallel rank holds it."""
    if layout.tp == 1:
        return cfg
    return local_config(cfg, layout.tp).replace(vocab_size=chunk(cfg.vocab_size, layout.tp))


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
    check_parallel(cfg, layout, seq, attention)
    setup = (precision, optimizer, checkpointing, attention)
    single = training_memory(cfg, batch, seq, *setup)
    local_cfg = rank_config(cfg, layout)
    local = training_memory(local_cfg, batch, seq // layout.cp, *setup)
    cp_ranks = sorted({0, layout.cp - 1})
    ranks = {}
    for cp_rank in cp_ranks:
        extra = _extra_per_layer(cfg, layout, batch, seq, precision, attention, cp_rank)
        head = _extra_head(cfg, layout, batch, seq, precision)
        moments = []
        for moment in local.moments:
            moment = _with_extra(moment, cfg.n_layers, extra, head, checkpointing)
            moments.append(rank_moment(cfg, local_cfg, layout, moment, precision, optimizer))
        top = max(moments, key=lambda m: m.peak)
        kind = f"cp rank {cp_rank}" if layout.cp > 1 else "every rank"
        ranks[kind] = top
    return ParallelMemory(layout, ranks, single.peak)


def _extra_per_layer(
    cfg: ModelConfig,
    layout: Layout,
    batch: int,
    seq: int,
    precision: str,
    attention: str,
    cp_rank: int,
) -> int:
    """Bytes a layer keeps on the rank beyond what the one-GPU model of its share keeps."""
    a = PRECISION[precision].activation
    local_cfg = rank_config(cfg, layout)
    tokens = seq // layout.cp
    plain = sum(layer_activations(local_cfg, batch, tokens, a, attention).values())
    if layout.cp > 1:
        exact = context_layer_activations(local_cfg, batch, seq, layout.cp, cp_rank, a, attention)
        return sum(exact.values()) - plain
    if layout.tp > 1 and layout.sp:
        exact = layer_activations_tp(cfg, batch, tokens, a, layout.tp, True, attention)
        return sum(exact.values()) - plain
    return 0


def _extra_head(cfg: ModelConfig, layout: Layout, batch: int, seq: int, precision: str) -> int:
    """The same outside the layers (sequence parallelism's final norm and head input)."""
    if layout.tp == 1:
        return 0
    a = PRECISION[precision].activation
    tokens = seq // layout.cp
    exact = head_activations_tp(cfg, batch, tokens, a, layout.tp, layout.sp)
    plain = head_activations(rank_config(cfg, layout), batch, tokens, a)
    return sum(exact.values()) - sum(plain.values())


def _with_extra(moment: Phase, layers: int, extra: int, head: int, checkpointing: str) -> Phase:
    """A moment with the extra activations of the layers still kept then (all in the forward,
    layers 0..i in block i's backward, none at the embeddings' backward or the optimizer)."""
    if (not extra and not head) or checkpointing == "full":
        return moment
    at = moment.at
    if at in ("optimizer step", "embedding backward"):
        return moment
    kept = layers if moment.layer is None else moment.layer + 1
    add = kept * extra + head
    categories = dict(moment.categories)
    categories["activations"] += add
    return replace(moment, total=moment.total + add, categories=categories)

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
from functools import lru_cache

from llmcalc.config.experts import is_moe
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.activations import head_activations, layer_activations
from llmcalc.memory.experts import layer_kinds
from llmcalc.memory.formula import PRECISION, Phase, training_memory
from llmcalc.parallel.buffers import RankMemory, rank_moment
from llmcalc.parallel.context import check_context, context_layer_activations
from llmcalc.parallel.expert import check_expert_parallel, moe_saved_per_rank
from llmcalc.parallel.layout import Layout, check_layout
from llmcalc.parallel.pipeline_memory import StageMemory, stage_memory
from llmcalc.parallel.states import partitioned
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
    """Every refusal of the layout, the tensor-, context- and expert-parallel closed forms."""
    check_layout(cfg, layout, seq)
    if layout.tp > 1:
        check_tensor_parallel(cfg, layout.tp, layout.sp, seq)
    if layout.cp > 1:
        check_context(cfg, seq, layout.cp, attention)
    if layout.ep > 1:
        check_expert_parallel(cfg, layout.ep)
        if layout.ep != layout.shard_group:
            raise LLMCalcError(
                f"--ep {layout.ep}: per-GPU memory is modelled with expert parallelism over every"
                f" data rank (--ep equal to dp × cp = {layout.shard_group}); not yet otherwise"
            )
        local = cfg.n_experts // layout.ep
        if cfg.experts_per_token > local:
            raise LLMCalcError(
                f"--ep {layout.ep}: per-GPU memory is modelled while each GPU holds at least "
                f"experts_per_token ({cfg.experts_per_token}) experts; here {cfg.n_experts}/"
                f"{layout.ep} = {local}; allowed: --ep up to {cfg.n_experts // cfg.experts_per_token}"
            )


# the planner asks for many layouts of one model: configs are hashable, so share the work
_training_memory = lru_cache(maxsize=4096)(training_memory)


@lru_cache(maxsize=4096)
def tensor_share(cfg: ModelConfig, tp: int) -> ModelConfig:
    """The model as one tensor-parallel rank holds it: its share of each layer and of the
    vocabulary."""
    if tp == 1:
        return cfg
    return local_config(cfg, tp).replace(vocab_size=chunk(cfg.vocab_size, tp))


@lru_cache(maxsize=4096)
def rank_config(cfg: ModelConfig, layout: Layout) -> ModelConfig:
    """The model as one rank holds and runs it: tensor parallelism's share (tensor_share);
    expert parallelism's n_experts/ep experts, which under the balanced rule process as many
    rows (n·k of every rank's tokens, over its experts) as ep·n·k/E each."""
    local = tensor_share(cfg, layout.tp)
    if layout.ep > 1:
        local = local.replace(n_experts=cfg.n_experts // layout.ep)
    return local


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
    if layout.pp > 1:
        return pipeline_memory(cfg, layout, batch, seq, setup)
    single = _training_memory(cfg, batch, seq, *setup)
    local_cfg = rank_config(cfg, layout)
    local = _training_memory(local_cfg, batch, seq // layout.cp, *setup)
    cp_ranks = sorted({0, layout.cp - 1})
    ranks = {}
    for cp_rank in cp_ranks:
        extra = _extra_per_layer(cfg, layout, batch, seq, setup, cp_rank)
        head = _extra_head(cfg, layout, batch, seq, precision)
        moments = []
        for moment in local.moments:
            moment = _with_extra(cfg, moment, extra, head)
            tokens = seq // layout.cp
            moment = _loss_parallel_backward(moment, layout, batch, tokens, local_cfg.vocab_size)
            moments.append(rank_moment(cfg, local_cfg, layout, moment, precision, optimizer))
        top = max(moments, key=lambda m: m.peak)
        kind = f"cp rank {cp_rank}" if layout.cp > 1 else "every rank"
        ranks[kind] = top
    return ParallelMemory(layout, ranks, single.peak)


def pipeline_memory(
    cfg: ModelConfig, layout: Layout, batch: int, seq: int, setup: tuple[str, str, str, str]
) -> ParallelMemory:
    """Pipeline ranks differ: the first holds the embeddings and the most micro-batches in
    flight, the last the LM head and the logits (parallel/pipeline_memory.py, walked along the
    schedule, exact against torch.distributed.pipelining). With other parallelism beside it, the
    stage is computed on the rank's tensor-parallel share (sequence parallelism's savings not
    counted: an overestimate) and its states split by ZeRO's rule (parallel/states.py), without
    the buffers of FSDP2: an estimate, not traced."""
    precision, optimizer, checkpointing, attention = setup
    if checkpointing != "none" or layout.cp > 1 or layout.ep > 1:
        raise LLMCalcError(
            f"--pp {layout.pp}: pipeline stages are modelled without activation checkpointing, "
            "--cp or --ep (not modelled yet)"
        )
    local_cfg = rank_config(cfg, layout)
    single = _training_memory(cfg, batch, seq, *setup).peak
    ranks = {}
    for rank in sorted({0, min(1, layout.pp - 1), layout.pp - 1}):
        stage = stage_memory(
            local_cfg,
            layout.pp,
            rank,
            layout.schedule,
            layout.microbatches,
            batch,
            seq,
            precision,
            optimizer,
            layout.virtual_stages,
            attention,
        )
        ranks[f"stage {rank} ({stage.kind})"] = _stage_rank(stage, layout)
    return ParallelMemory(layout, ranks, single)


def _stage_rank(stage: StageMemory, layout: Layout) -> RankMemory:
    parts, ranks = stage.parts, layout.shard_group
    weights, grads, states = parts["weights"], parts["gradients"], parts["optimizer"]
    if layout.zero >= 1:
        states = partitioned(states, ranks)
    if layout.zero >= 2:
        grads = partitioned(grads, ranks)
    if layout.zero >= 3:
        weights = partitioned(weights, ranks)
    host = 0
    if layout.offload != "none":
        host, states = states, 0
    categories = {
        "weights": weights,
        "gradients": grads,
        "optimizer": states,
        "activations": parts["activations"] + parts["stage_outputs"],
        "buffers": parts["p2p_buffers"] + parts["gradient_in_send"],
        "other": parts["batch"] + parts["backward_transient"],
    }
    return RankMemory(categories, stage.at, host)


def _extra_per_layer(
    cfg: ModelConfig,
    layout: Layout,
    batch: int,
    seq: int,
    setup: tuple[str, str, str, str],
    cp_rank: int,
) -> dict[bool, int]:
    """Bytes a dense (False) and an MoE (True) layer keep on the rank beyond what the one-GPU
    model of its share keeps. Under full checkpointing a layer keeps its input: with sequence
    parallelism 1/t of it."""
    precision, _, checkpointing, attention = setup
    a = PRECISION[precision].activation
    local_cfg = rank_config(cfg, layout)
    tokens = seq // layout.cp
    if checkpointing == "full":
        stream = batch * tokens * cfg.d_model * a
        shrink = stream // layout.tp - stream if layout.sp else 0
        return {False: shrink, True: shrink}
    extra = {}
    for moe in {False, is_moe(cfg)}:
        plain = sum(layer_activations(local_cfg, batch, tokens, a, attention, moe=moe).values())
        exact = plain
        if layout.cp > 1:
            saved = context_layer_activations(
                local_cfg, batch, seq, layout.cp, cp_rank, a, attention, moe=moe
            )
            exact = sum(saved.values())
        elif layout.tp > 1 and layout.sp:
            saved = layer_activations_tp(cfg, batch, tokens, a, layout.tp, True, attention)
            exact = sum(saved.values())
        if moe and layout.ep > 1:  # the rows rank 0's experts process, as dispatched
            n = batch * tokens
            exact += moe_saved_per_rank(cfg, n, a, layout.ep, 0)
            exact -= moe_saved_per_rank(local_cfg, n, a, 1, 0)
        extra[moe] = exact - plain
    return extra


def _extra_head(cfg: ModelConfig, layout: Layout, batch: int, seq: int, precision: str) -> int:
    """The same outside the layers (sequence parallelism's final norm and head input)."""
    if layout.tp == 1:
        return 0
    a = PRECISION[precision].activation
    tokens = seq // layout.cp
    exact = head_activations_tp(cfg, batch, tokens, a, layout.tp, layout.sp)
    plain = head_activations(rank_config(cfg, layout), batch, tokens, a)
    return sum(exact.values()) - sum(plain.values())


def _with_extra(cfg: ModelConfig, moment: Phase, extra: dict[bool, int], head: int) -> Phase:
    """A moment with the extra activations of the layers still kept then (all in the forward,
    layers 0..i in block i's backward or checkpointed forward, none at the embeddings' backward
    or the optimizer)."""
    if not any(extra.values()) and not head:
        return moment
    if moment.at in ("optimizer step", "embedding backward"):
        return moment
    kinds = layer_kinds(cfg, moment.layer)
    return _plus(moment, "activations", head + sum(n * extra[moe] for (_, moe), n in kinds.items()))


def _loss_parallel_backward(
    moment: Phase, layout: Layout, batch: int, tokens: int, vocab: int
) -> Phase:
    """torch's loss_parallel differentiates its log-softmax with one more fp32 buffer of the
    local logits than cross_entropy does (zeros, exp and their sum alive at once)."""
    if layout.tp == 1 or moment.at != "log-softmax backward":
        return moment
    return _plus(moment, "other", batch * tokens * vocab * 4)


def _plus(moment: Phase, category: str, nbytes: int) -> Phase:
    """The moment with `nbytes` more in `category`."""
    categories = dict(moment.categories)
    categories[category] += nbytes
    return replace(moment, total=moment.total + nbytes, categories=categories)

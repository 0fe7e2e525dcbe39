"""Expert parallelism, closed form: ep ranks each hold n_experts / ep of every MoE layer's routed
experts (gate_up_proj and down_proj split on the expert dimension, as torchtitan's
ExpertParallel and Megatron-Core's expert model parallel do), and all-to-alls move each token's
k copies to the ranks that hold their experts and the results back (GShard, Lepikhin et al.
2020, section 2.2; Fedus et al. 2021, Switch Transformer, figure 3). No torch here.

The ep ranks are a data-parallel group too: each has its own n = B·T tokens. Rows per expert are
the balanced rule of model/experts.py on each rank's n·k assignments: expert e gets
c_e = n·k // E rows from every rank, one more for the first n·k mod E experts, so rank r's
experts process R_r = ep · Σ_{e of r} c_e rows (a rank with the first experts gets the
remainder). parallel/expert_plan.py runs it on torch.distributed; tests/parallel/ checks every
figure here against that run on a fake process group.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.experts import is_moe, moe_layer_count
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError, quote
from llmcalc.memory.activations import INT64, Saved
from llmcalc.memory.experts import moe_saved
from llmcalc.memory.formula import PRECISION, training_memory
from llmcalc.memory.parameters import parameter_groups

COUNT_BYTES = INT64  # the router's per-expert counts, exchanged as int64 (torch.bincount)


def check_expert_parallel(cfg: ModelConfig, ep: int) -> None:
    """--ep must be a positive divisor of n_experts, on a mixture-of-experts model."""
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise LLMCalcError(f"--ep {quote(ep)}: expert parallelism needs a positive integer")
    if not is_moe(cfg):
        if ep == 1:
            return
        raise LLMCalcError(
            f"--ep {ep}: {cfg.name} is a dense model (n_experts 0); expert parallelism "
            "needs a mixture-of-experts model (--ep 1 only)"
        )
    if cfg.n_experts % ep:
        raise LLMCalcError(
            f"--ep {ep}: does not divide n_experts {cfg.n_experts}; allowed: a divisor of "
            f"{cfg.n_experts}"
        )


def _check_rank(ep: int, rank: int) -> None:
    if not 0 <= rank < ep:
        raise LLMCalcError(f"rank {quote(rank)}: allowed 0 .. {ep - 1} with --ep {ep}")


def expert_elements(cfg: ModelConfig) -> int:
    """One routed expert's parameter elements: gate_up (2f or f, d), down (d, f) and, with
    expert_bias, their biases (model/experts.py)."""
    d, f = cfg.d_model, cfg.d_ff_expert
    up = 2 * f if cfg.is_glu else f
    return up * d + d * f + ((up + d) if cfg.expert_bias else 0)


def parameters_per_rank(cfg: ModelConfig, ep: int) -> int:
    """Parameter elements one rank holds: every parameter (memory/parameters.py) but the routed
    experts, which it holds E / ep of per MoE layer; the router, shared experts, attention,
    embeddings and head are whole on every rank."""
    check_expert_parallel(cfg, ep)
    total = sum(sum(sizes) * times for sizes, times in parameter_groups(cfg))
    if not is_moe(cfg):
        return total
    held = cfg.n_experts // ep
    return total - moe_layer_count(cfg) * (cfg.n_experts - held) * expert_elements(cfg)


def rank_counts(cfg: ModelConfig, tokens: int, ep: int, rank: int) -> list[int]:
    """Rows each of rank's E / ep experts gets from ONE rank's `tokens` tokens (balanced rule)."""
    check_expert_parallel(cfg, ep)
    _check_rank(ep, rank)
    experts, held = cfg.n_experts, cfg.n_experts // ep
    base, extra = divmod(tokens * cfg.experts_per_token, experts)
    return [base + (1 if e < extra else 0) for e in range(rank * held, (rank + 1) * held)]


def local_rows(cfg: ModelConfig, tokens: int, ep: int, rank: int) -> int:
    """R_r: rows rank's experts process, from the `tokens` tokens of each of the ep ranks."""
    return ep * sum(rank_counts(cfg, tokens, ep, rank))


def _expert_rows_part(cfg: ModelConfig, rows: int, a: int) -> int:
    """Saved bytes of memory/experts.py's moe_saved that follow the rows the experts multiply:
    the gathered rows the first bmm keeps and each expert's hidden tensors (its MLP on them),
    taken from moe_saved itself with k = 1 and `rows` tokens."""
    saved = Saved()
    moe_saved(saved, cfg.replace(experts_per_token=1), "m", rows, a)
    skip = {"order", "token", "out", "weights", "weighted"}
    return sum(
        size
        for name, size in saved.bytes.items()
        if name.startswith("m.experts.") and name.split(".")[2] not in skip
    )


def moe_saved_per_rank(cfg: ModelConfig, tokens: int, a: int, ep: int, rank: int) -> int:
    """Bytes one MoE layer keeps for backward on `rank` (a bytes per activation): the
    single-GPU set (memory/experts.py, moe_saved) on its `tokens` tokens, with the experts'
    rows and hidden tensors on the R_r rows its own experts process instead of n·k
    (parallel/expert_plan.py's dispatch: the all-to-alls keep nothing, the received rows are
    regrouped by local expert with an int64 permutation of R_r that the gather and the scatter
    back keep, only with more than one local expert; the combined (n·k, d) rows are kept by the
    weighting, as the experts' output is on one GPU)."""
    check_expert_parallel(cfg, ep)
    saved = Saved()
    moe_saved(saved, cfg, "m", tokens, a)
    if ep == 1 or not is_moe(cfg):
        return saved.total
    rows, here = tokens * cfg.experts_per_token, local_rows(cfg, tokens, ep, rank)
    permutation = here * INT64 if cfg.n_experts // ep > 1 else 0
    return (
        saved.total
        - _expert_rows_part(cfg, rows, a)
        + _expert_rows_part(cfg, here, a)
        + permutation
    )


def activations_per_rank(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    ep: int,
    rank: int,
    precision: str = "fp32",
    checkpointing: str = "none",
    attention: str = "sdpa",
) -> int:
    """Bytes of activations one rank keeps for backward in a training step, each rank on its
    own (batch, seq) tokens: the single-GPU figure (memory/formula.py) with each MoE layer's as
    moe_saved_per_rank; with full checkpointing the blocks keep only their inputs, as on one
    GPU."""
    a = PRECISION[precision].activation
    whole = training_memory(
        cfg, batch, seq, precision, checkpointing=checkpointing, attention=attention
    ).activations
    if checkpointing == "full":
        return whole
    n, layers = batch * seq, moe_layer_count(cfg)
    single = moe_saved_per_rank(cfg, n, a, 1, 0)
    return whole + layers * (moe_saved_per_rank(cfg, n, a, ep, rank) - single)


@dataclass(frozen=True)
class AllToAll:
    """One all-to-all on one rank: the bytes of its input (sent, its own slice included) and of
    its output (received), as the buffers torch's all_to_all_single takes and returns."""

    cause: str  # "experts"
    what: str  # "counts" | "dispatch" | "combine"
    phase: str  # "forward" | "backward" | "recompute"
    sent: int
    received: int
    times: int  # MoE layers

    @property
    def total_sent(self) -> int:
        return self.sent * self.times


def all_to_alls(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    ep: int,
    rank: int,
    precision: str = "fp32",
    checkpointing: str = "none",
) -> list[AllToAll]:
    """The all-to-alls of one training step on `rank`, each MoE layer's in order: the forward
    exchanges the router's counts (E int64 each way) then sends n·k·d rows out and R_r·d in
    (dispatch) and the experts' R_r·d rows back for n·k·d (combine); the backward runs the
    combine's and then the dispatch's transposed (the gradient of each output sent back with
    the splits swapped). Full checkpointing runs each layer's forward again in its backward,
    counts, dispatch and combine included. Nothing under --ep 1."""
    check_expert_parallel(cfg, ep)
    _check_rank(ep, rank)
    if ep == 1 or not is_moe(cfg):
        return []
    a = PRECISION[precision].activation
    d, layers = cfg.d_model, moe_layer_count(cfg)
    mine = batch * seq * cfg.experts_per_token * d * a
    theirs = local_rows(cfg, batch * seq, ep, rank) * d * a
    counts = cfg.n_experts * COUNT_BYTES
    forward = [("counts", counts, counts), ("dispatch", mine, theirs), ("combine", theirs, mine)]
    backward = [("combine", mine, theirs), ("dispatch", theirs, mine)]
    phases = [("forward", forward)]
    if checkpointing == "full":
        phases.append(("recompute", forward))
    phases.append(("backward", backward))
    return [
        AllToAll("experts", what, phase, sent, received, layers)
        for phase, ops in phases
        for what, sent, received in ops
    ]


def all_to_all_bytes(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    ep: int,
    rank: int,
    precision: str = "fp32",
    checkpointing: str = "none",
) -> int:
    """Bytes one rank puts into all-to-alls in one training step (its own slice included)."""
    ops = all_to_alls(cfg, batch, seq, ep, rank, precision, checkpointing)
    return sum(op.total_sent for op in ops)

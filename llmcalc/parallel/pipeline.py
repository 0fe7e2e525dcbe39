"""Pipeline parallelism in closed form: which layers each stage holds, how many microbatches'
saved activations a rank holds at once under each schedule, its point-to-point bytes per step
(a rank's peak composed from those: pipeline_memory.py). No torch here (pipeline_trace.py
checks it on torch's own torch.distributed.pipelining, on fake tensors).

Partition. The L layers form C = pp·v chunks (v virtual stages per rank; v = 1 except for
interleaved 1F1B); chunk c holds layers [c·q + min(c, r), ...) with q, r = divmod(L, C): an even
split, the first r chunks one layer more (torch.tensor_split's rule; torchtitan splits the same
way when no layer list is given). The first chunk also holds the embeddings, the last the final
norm and LM head (Megatron-LM, torchtitan); a tied head is a copy on the last stage (Megatron-LM
keeps one there and all-reduces the two gradients: not point-to-point, not counted here). Chunk c
lives on rank c mod pp (torch's ScheduleInterleaved1F1B: stage = local_index·pp + rank).

Symbols: M microbatches of b sequences of s tokens, n = b·s, d d_model, a bytes per activation.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.activations import head_activations, layer_activations
from llmcalc.memory.experts import layer_kind, layer_kinds
from llmcalc.memory.parameters import block_sizes, parameter_groups

SCHEDULES = ("gpipe", "1f1b", "interleaved")
# saved outside the blocks, by the chunk that holds them (tokens and targets are the batch's,
# held all step by the loop: not saved activations of a microbatch)
FIRST_CHUNK_SAVED = ("embedding_norm", "embeddings", "position_ids", "embedding_scale")
LAST_CHUNK_SAVED = ("final_norm", "last_layer_out", "logits_tanh", "log_softmax", "loss")


# --- the partition ------------------------------------------------------------------------------


def check_pipeline(
    n_layers: int, pp: int, schedule: str, microbatches: int, virtual: int = 1
) -> None:
    """Refuse what torch.distributed.pipelining refuses (or what cannot be split), one line each."""
    if schedule not in SCHEDULES:
        raise LLMCalcError(f"--schedule {schedule!r}: must be one of {', '.join(SCHEDULES)}")
    if pp < 1:
        raise LLMCalcError(f"--pp {pp}: expected a positive number of pipeline stages")
    if microbatches < 1:
        raise LLMCalcError(f"--microbatches {microbatches}: expected at least 1")
    if pp > n_layers:
        raise LLMCalcError(
            f"--pp {pp}: more pipeline stages than layers ({n_layers}); each stage needs one"
        )
    if virtual > 1 and pp == 1:
        raise LLMCalcError(f"--virtual-stages {virtual}: chunks of a pipeline; give --pp 2 or more")
    if virtual < 1 or (virtual > 1 and schedule != "interleaved"):
        raise LLMCalcError(
            f"--virtual-stages {virtual}: expected 1, or more with --schedule interleaved"
        )
    if pp * virtual > n_layers:
        raise LLMCalcError(
            f"--pp {pp} x {virtual} virtual stages: more pipeline stages than the model's "
            f"{n_layers} layers"
        )
    if pp > 1 and schedule == "1f1b" and microbatches < pp:  # Schedule1F1B.__init__'s ValueError
        raise LLMCalcError(
            f"--microbatches {microbatches}: 1f1b needs at least one per stage (--pp {pp})"
        )
    if schedule == "interleaved":  # ScheduleInterleaved1F1B.__init__'s ValueError
        rounds = max(1, microbatches // pp)
        if microbatches % rounds:
            raise LLMCalcError(
                f"--microbatches {microbatches}: interleaved 1F1B needs a multiple of its "
                f"rounds max(1, M // pp) = {rounds} (torch's ScheduleInterleaved1F1B)"
            )


def chunk_layers(n_layers: int, chunks: int, chunk: int) -> tuple[int, int]:
    """(first layer, number of layers) of chunk `chunk` of `chunks`: the even split above."""
    q, r = divmod(n_layers, chunks)
    return chunk * q + min(chunk, r), q + (1 if chunk < r else 0)


def rank_chunks(pp: int, rank: int, virtual: int = 1) -> list[int]:
    """The chunks (global stage indices) rank `rank` holds, in its local order."""
    return [rank + j * pp for j in range(virtual)]


def rank_kind(pp: int, rank: int) -> str:
    return "only" if pp == 1 else "first" if rank == 0 else "last" if rank == pp - 1 else "middle"


# --- the schedules ------------------------------------------------------------------------------


def interleaved_warmup(pp: int, microbatches: int, virtual: int, rank: int) -> int:
    """Forwards before the first backward on `rank` under torch's ScheduleInterleaved1F1B
    (torch/distributed/pipelining/schedules.py, _get_warmup_ops with multiply_factor 2):
    (v − 1)·m + 2·(pp − 1 − rank), at most M·v, where m = M // max(1, M // pp) microbatches per
    round. Narayanan et al. 2021 (section 2.2.2) use (v − 1)·pp + 2·(pp − 1 − rank) with m = pp."""
    per_round = microbatches // max(1, microbatches // pp)
    return min((virtual - 1) * per_round + 2 * (pp - 1 - rank), microbatches * virtual)


def schedule_order(
    pp: int, microbatches: int, schedule: str, rank: int, virtual: int = 1
) -> list[tuple[str, int, int]]:
    """The rank's computations in order: ('F' or 'B', chunk, microbatch), as torch runs them.
    gpipe (ScheduleGPipe): every forward, then every backward. 1f1b (Schedule1F1B): min(M,
    pp − rank) forwards, then backward-then-forward pairs, then the remaining backwards.
    interleaved (ScheduleInterleaved1F1B, via _get_1f1b_rank_ops): the warm-up forwards, then
    forward-then-backward pairs, then backwards; the forward chunk of op i is local stage
    (i // m) mod v, the backward's v − 1 − ((i − warm-up) // m) mod v."""
    check_pipeline(pp * virtual, pp, schedule, microbatches, virtual)
    M = microbatches
    if schedule == "gpipe":
        return [("F", rank, i) for i in range(M)] + [("B", rank, i) for i in range(M)]
    if schedule == "1f1b":
        warm = min(M, pp - rank)
        order = [("F", rank, i) for i in range(warm)]
        for i in range(M):
            order.append(("B", rank, i))
            if warm + i < M:
                order.append(("F", rank, warm + i))
        return order
    per_round = M // max(1, M // pp)
    warm = interleaved_warmup(pp, M, virtual, rank)
    fwd = [0] * virtual
    bwd = [0] * virtual
    order = []
    for op in range(M * virtual + warm):  # warm-up, steady, cool-down: 2·M·v computations
        if op < M * virtual:
            local = (op // per_round) % virtual
            order.append(("F", local * pp + rank, fwd[local]))
            fwd[local] += 1
        if op >= warm:
            local = virtual - 1 - ((op - warm) // per_round) % virtual
            order.append(("B", local * pp + rank, bwd[local]))
            bwd[local] += 1
    return order


def in_flight(pp: int, microbatches: int, schedule: str, rank: int, virtual: int = 1) -> int:
    """Most (chunk, microbatch) forwards whose saved activations the rank holds at once:
    gpipe M; 1f1b min(pp − rank, M) (a backward comes before each further forward);
    interleaved the warm-up W plus the steady state's first forward (it runs before its
    backward), W + 1, or M·v when the warm-up is every forward."""
    check_pipeline(pp * virtual, pp, schedule, microbatches, virtual)
    if schedule == "gpipe":
        return microbatches
    if schedule == "1f1b":
        return min(pp - rank, microbatches)
    warm = interleaved_warmup(pp, microbatches, virtual, rank)
    return min(warm + 1, microbatches * virtual)


# --- bytes per chunk ----------------------------------------------------------------------------


def kinds_in(cfg: ModelConfig, first: int, count: int) -> dict[tuple[bool, bool], int]:
    upto = layer_kinds(cfg, first + count - 1)
    if first == 0:
        return upto
    before = layer_kinds(cfg, first - 1)
    return {kind: upto[kind] - before.get(kind, 0) for kind in upto}


@dataclass(frozen=True)
class Chunk:
    index: int
    first_layer: int
    layers: int
    is_first: bool
    is_last: bool


def chunk(cfg: ModelConfig, pp: int, index: int, virtual: int = 1) -> Chunk:
    chunks = pp * virtual
    first, count = chunk_layers(cfg.n_layers, chunks, index)
    return Chunk(index, first, count, index == 0, index == chunks - 1)


def chunk_saved(
    cfg: ModelConfig, c: Chunk, batch: int, seq: int, a: int, attention: str = "sdpa"
) -> dict[str, int]:
    """Bytes one microbatch's forward through chunk `c` keeps for backward, by part: its layers
    (memory/activations.py, exact), less the first layer's input where a non-first chunk
    receives it (the receive buffer holds it: counted under p2p_buffers), RoPE's cos and sin
    (each chunk makes its own), and the embeddings' (first chunk) or the head's and loss's
    (last chunk) saved tensors."""
    head = head_activations(cfg, batch, seq, a)
    layers = 0
    for (local, moe), count in kinds_in(cfg, c.first_layer, c.layers).items():
        if count:
            saved = layer_activations(cfg, batch, seq, a, attention, local, moe)
            layers += count * sum(saved.values())
    parts = {"layers": layers}
    if not c.is_first:
        local, moe = layer_kind(cfg, c.first_layer)
        received = layer_activations(cfg, batch, seq, a, attention, local, moe).get("x", 0)
        parts["layers"] -= received
    parts["rope"] = head.get("rope_tables", 0)
    parts["embeddings"] = c.is_first * sum(_starting(head, FIRST_CHUNK_SAVED))
    parts["head"] = c.is_last * sum(_starting(head, LAST_CHUNK_SAVED))
    return parts


def _starting(saved: dict[str, int], prefixes: tuple[str, ...]) -> list[int]:
    return [size for name, size in saved.items() if name.startswith(prefixes)]


def chunk_parameters(cfg: ModelConfig, c: Chunk) -> list[tuple[list[int], int]]:
    """The chunk's parameter tensors' sizes in the model's order, as (sizes, times) runs like
    memory/parameters.py's parameter_groups (never a list as long as the layers): the
    embeddings, the blocks by kind (dense before MoE: exact for models of one kind), the head
    (a tied head is a copy on the last chunk unless the same chunk holds the embeddings)."""
    groups = parameter_groups(cfg)  # the whole model's: its embeddings first, its head last
    blocks = block_sizes(cfg)
    first = list(groups[0][0]) if c.is_first else []
    runs = [
        (blocks[moe], count)
        for (_, moe), count in kinds_in(cfg, c.first_layer, c.layers).items()
        if count
    ]
    last = list(groups[-1][0]) if c.is_last else []
    if c.is_last and cfg.tie_embeddings and not c.is_first:  # its own copy, before any bias
        last.insert(len(last) - (1 if cfg.lm_head_bias else 0), cfg.vocab_size * cfg.d_model)
    return [(first, 1), *runs, (last, 1)]


def parameter_count(groups: list[tuple[list[int], int]]) -> tuple[int, int]:
    """(parameters, tensors) of chunk_parameters' runs."""
    return sum(sum(s) * t for s, t in groups), sum(len(s) * t for s, t in groups)


# --- point-to-point bytes -----------------------------------------------------------------------


@dataclass(frozen=True)
class P2P:
    """Bytes one rank moves point to point in one step (M microbatches of (b, s, d) each way)."""

    activations_sent: int  # forward: this rank's chunks' outputs to the next stage
    activations_received: int
    gradients_sent: int  # backward: the gradient of each chunk's input to the previous stage
    gradients_received: int

    sent = property(lambda self: self.activations_sent + self.gradients_sent)
    received = property(lambda self: self.activations_received + self.gradients_received)


def p2p_bytes(
    cfg: ModelConfig,
    pp: int,
    rank: int,
    microbatches: int,
    batch: int,
    seq: int,
    a: int,
    virtual: int = 1,
) -> P2P:
    """Each chunk but the last sends M activations of b·s·d·a bytes forward and receives M
    gradients of the same size; each chunk but the first receives M activations and sends M
    gradients (torch's PipelineStage: one isend / irecv per microbatch and boundary)."""
    one = microbatches * batch * seq * cfg.d_model * a
    chunks = [chunk(cfg, pp, c, virtual) for c in rank_chunks(pp, rank, virtual)]
    not_last = sum(1 for c in chunks if not c.is_last)
    not_first = sum(1 for c in chunks if not c.is_first)
    return P2P(one * not_last, one * not_first, one * not_first, one * not_last)

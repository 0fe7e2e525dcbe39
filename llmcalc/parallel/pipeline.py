"""Pipeline parallelism in closed form: which layers each stage holds, how many microbatches'
saved activations a rank holds at once under each schedule, its point-to-point bytes per step,
and its peak memory composed from those. No torch here (pipeline_trace.py checks it on torch's
own torch.distributed.pipelining, on fake tensors).

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
from llmcalc.memory.activations import block_backward_peak, head_activations, layer_activations
from llmcalc.memory.experts import layer_kinds
from llmcalc.memory.formula import PRECISION, STATE_TENSORS
from llmcalc.memory.parameters import _norm_and_linear, block_sizes

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
        raise LLMCalcError(f"--schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if pp < 1:
        raise LLMCalcError(f"--pp {pp}: expected a positive number of pipeline stages")
    if microbatches < 1:
        raise LLMCalcError(f"--microbatches {microbatches}: expected at least 1")
    if virtual < 1 or (virtual > 1 and schedule != "interleaved"):
        raise LLMCalcError(
            f"--virtual-stages {virtual}: expected 1, or more with --schedule interleaved"
        )
    if pp * virtual > n_layers:
        stages = f"--pp {pp}" + (f" x {virtual} virtual stages" if virtual > 1 else "")
        raise LLMCalcError(f"{stages}: more pipeline stages than the model's {n_layers} layers")
    if schedule == "1f1b" and microbatches < pp:  # Schedule1F1B.__init__'s ValueError
        raise LLMCalcError(
            f"--microbatches {microbatches}: 1F1B needs at least as many microbatches "
            f"as stages (--pp {pp})"
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


def _kinds_in(cfg: ModelConfig, first: int, count: int) -> dict[tuple[bool, bool], int]:
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
    from llmcalc.memory.experts import layer_kind

    head = head_activations(cfg, batch, seq, a)
    layers = 0
    for (local, moe), count in _kinds_in(cfg, c.first_layer, c.layers).items():
        if count:
            saved = layer_activations(cfg, batch, seq, a, attention, local, moe)
            layers += count * sum(saved.values())
    parts = {"layers": layers}
    if not c.is_first:
        local, moe = layer_kind(cfg, c.first_layer)
        received = layer_activations(cfg, batch, seq, a, attention, local, moe).get("x", 0)
        parts["layers"] -= received
    parts["rope"] = head.get("rope_tables", 0)
    parts["embeddings"] = sum(v for k, v in head.items() if c.is_first and k.startswith(FIRST_CHUNK_SAVED))
    parts["head"] = sum(v for k, v in head.items() if c.is_last and k.startswith(LAST_CHUNK_SAVED))
    return parts


def chunk_parameters(cfg: ModelConfig, c: Chunk) -> list[int]:
    """The chunk's parameter tensors' sizes (a tied head is a copy on the last chunk)."""
    d = cfg.d_model
    norm, _ = _norm_and_linear(cfg)
    blocks = block_sizes(cfg)
    sizes: list[int] = []
    if c.is_first:
        sizes.append(cfg.vocab_size * d)
        if cfg.position == "learned":
            sizes.append((cfg.max_seq_len + cfg.position_offset) * d)
        sizes += norm(d) if cfg.embedding_norm else []
    for (_, moe), count in _kinds_in(cfg, c.first_layer, c.layers).items():
        sizes += blocks[moe] * count
    if c.is_last:
        sizes += norm(d) if cfg.final_norm else []
        tied_elsewhere = cfg.tie_embeddings and c.is_first
        sizes += [] if tied_elsewhere else [cfg.vocab_size * d]
        sizes += [cfg.vocab_size] if cfg.lm_head_bias else []
    return sizes


# --- point-to-point bytes -----------------------------------------------------------------------


@dataclass(frozen=True)
class P2P:
    """Bytes one rank moves point to point in one step (M microbatches of (b, s, d) each way)."""

    activations_sent: int  # forward: this rank's chunks' outputs to the next stage
    activations_received: int
    gradients_sent: int  # backward: the gradient of each chunk's input to the previous stage
    gradients_received: int

    @property
    def sent(self) -> int:
        return self.activations_sent + self.gradients_sent

    @property
    def received(self) -> int:
        return self.activations_received + self.gradients_received


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


# --- a rank's peak, composed ---------------------------------------------------------------------


@dataclass(frozen=True)
class StageMemory:
    rank: int
    kind: str  # first, middle, last (or only)
    layers: list[tuple[int, int]]  # (first layer, count) of each chunk the rank holds
    in_flight: int
    saved_per_microbatch: dict[int, int]  # chunk -> bytes one microbatch keeps for backward
    saved_peak: int  # activations held at most: the schedule's worst set of in-flight forwards
    parts: dict[str, int]  # the peak's composition (stage_memory's docstring)
    at: str  # the moment of the peak, in words
    p2p: P2P

    @property
    def peak(self) -> int:
        return sum(self.parts.values())


def saved_peak(order: list[tuple[str, int, int]], saved: dict[int, int]) -> int:
    """The most saved-activation bytes alive at once: after each forward, before the next
    backward (a backward frees its chunk's as it runs)."""
    alive, top = 0, 0
    for op, c, _ in order:
        alive += saved[c] if op == "F" else -saved[c]
        top = max(top, alive)
    return top


def backward_transient(
    cfg: ModelConfig, c: Chunk, batch: int, seq: int, a: int, attention: str
) -> int:
    """Beyond the chunk's saved tensors, the most one backward of it holds: inside a block,
    memory/activations.py's block_backward_peak less the block's own saved tensors; on the last
    chunk first the loss's two n·V fp32 gradients (log-softmax and its input)."""
    top = 2 * batch * seq * cfg.vocab_size * 4 if c.is_last else 0
    for (local, moe), count in _kinds_in(cfg, c.first_layer, c.layers).items():
        if count:
            saved = layer_activations(cfg, batch, seq, a, attention, local, moe)
            block = block_backward_peak(cfg, batch, seq, a, attention, saved)
            top = max(top, block - sum(saved.values()))
    return top


def stage_memory(
    cfg: ModelConfig,
    pp: int,
    rank: int,
    schedule: str,
    microbatches: int,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    virtual: int = 1,
    attention: str = "sdpa",
) -> StageMemory:
    """One rank's memory during a pipeline step, walked along the schedule's order; at its
    worst moment, in words:
    peak ≈ the stage's weights and optimizer state, and the gradients of the chunks whose
           first backward has run (all of them from then on)
         + the in-flight microbatches' saved activations (chunk_saved, exact)
         + each in-flight forward's output, kept by the stage until its backward
           (n·d·a; the last chunk's logits, n·V·a)
         + the receive buffers torch's PipelineStage allocates for every microbatch up front
           (M·n·d·a per chunk that receives activations, and per chunk that receives gradients)
         + one backward's transient (backward_transient)
         + the batch's token ids (first stage) and targets (last), b·M·s int64 each, and the
           last stage's M fp32 losses.
    A chunk's first backward is taken at its start (no gradients yet, its transient) and at
    its end (its gradients made, its saved tensors gone)."""
    check_pipeline(cfg.n_layers, pp, schedule, microbatches, virtual)
    p = PRECISION[precision]
    a, n, d, V = p.activation, batch * seq, cfg.d_model, cfg.vocab_size
    chunks = {c: chunk(cfg, pp, c, virtual) for c in rank_chunks(pp, rank, virtual)}
    saved = {
        i: sum(chunk_saved(cfg, c, batch, seq, a, attention).values()) for i, c in chunks.items()
    }
    output = {i: n * (V if c.is_last else d) * a for i, c in chunks.items()}
    transient = {i: backward_transient(cfg, c, batch, seq, a, attention) for i, c in chunks.items()}
    sizes = {i: chunk_parameters(cfg, c) for i, c in chunks.items()}
    n_params = sum(sum(s) for s in sizes.values())
    n_tensors = sum(len(s) for s in sizes.values())
    counters = 4 * n_tensors if optimizer == "adamw" else 0
    receives = sum(not c.is_first for c in chunks.values()) + sum(
        not c.is_last for c in chunks.values()
    )
    last = any(c.is_last for c in chunks.values())
    first = any(c.is_first for c in chunks.values())
    base = {
        "weights": n_params * p.weight,
        "optimizer": STATE_TENSORS[optimizer] * n_params * p.state
        + counters
        + n_params * p.master,
        "p2p_buffers": receives * microbatches * n * d * a,
        "batch": (first + last) * microbatches * n * 8 + (microbatches * 4 if last else 0),
    }
    order = schedule_order(pp, microbatches, schedule, rank, virtual)
    alive, outputs, grads = 0, 0, 0
    done: set[int] = set()
    best: tuple[int, dict[str, int], str] = (-1, {}, "")

    def moment(at: str, gradients: int, activations: int, held: int, extra: int) -> None:
        nonlocal best
        parts = {
            **base,
            "gradients": gradients,
            "activations": activations,
            "stage_outputs": held,
            "backward_transient": extra,
        }
        if sum(parts.values()) > best[0]:
            best = (sum(parts.values()), parts, at)

    for op, c, mb in order:
        if op == "F":
            alive += saved[c]
            outputs += output[c]
            moment(f"forward of chunk {c}, microbatch {mb}", grads, alive, outputs, 0)
            continue
        mine = sum(sizes[c]) * p.grad
        at = f"backward of chunk {c}, microbatch {mb}"
        if c in done:
            moment(at, grads, alive, outputs, transient[c])
        else:
            moment(at + " (start)", grads, alive, outputs, transient[c])
            moment(at + " (end)", grads + mine, alive - saved[c], outputs, 0)
            grads += mine
            done.add(c)
        alive -= saved[c]
        outputs -= output[c]
    return StageMemory(
        rank,
        rank_kind(pp, rank),
        [(c.first_layer, c.layers) for c in chunks.values()],
        in_flight(pp, microbatches, schedule, rank, virtual),
        saved,
        saved_peak(order, saved),
        best[1],
        best[2],
        p2p_bytes(cfg, pp, rank, microbatches, batch, seq, a, virtual),
    )

"""A pipeline rank's peak memory, composed from pipeline.py's exact parts and walked along the
schedule's order of forwards and backwards (how close it comes: tests/parallel/test_pipeline.py
against torch.distributed.pipelining). No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.activations import block_backward_peak, layer_activations
from llmcalc.memory.experts import layer_kind
from llmcalc.memory.formula import PRECISION, STATE_TENSORS
from llmcalc.memory.parameters import block_sizes, conversion_excess
from llmcalc.parallel.pipeline import (
    P2P,
    Chunk,
    check_pipeline,
    chunk,
    chunk_parameters,
    chunk_saved,
    in_flight,
    kinds_in,
    p2p_bytes,
    parameter_count,
    rank_chunks,
    rank_kind,
    schedule_order,
)


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


def backward_transients(
    cfg: ModelConfig, c: Chunk, batch: int, seq: int, a: int, attention: str
) -> tuple[int, int, int]:
    """Beyond the chunk's saved tensors, the most one backward of it holds: (at the loss, in a
    block in the chunk's first backward, in a block in a later one). The loss (last chunk): its
    two n·V fp32 gradients (log-softmax and its input). A block: memory/activations.py's
    block_backward_peak less the block's own saved tensors; on a chunk that receives its
    output's gradient the peak is in its last block's MLP, where the incoming gradient of the
    residual stream is the receive buffer (counted there) and that of the block's input is not
    made yet: less the two n·d·a stream gradients. In a later backward an MoE block's experts'
    down-projection gradient (memory/experts.py's moe_backward_in_flight counts it) has been
    added to .grad and freed by the experts' first bmm."""
    loss = 2 * batch * seq * cfg.vocab_size * 4 if c.is_last else 0
    received = 0 if c.is_last else 2 * batch * seq * cfg.d_model * a
    first = later = 0
    for (local, moe), count in kinds_in(cfg, c.first_layer, c.layers).items():
        if count:
            saved = layer_activations(cfg, batch, seq, a, attention, local, moe)
            block = block_backward_peak(cfg, batch, seq, a, attention, saved)
            extra = block - sum(saved.values()) - received
            first = max(first, extra)
            down = cfg.n_experts * cfg.d_ff_expert * cfg.d_model * a if moe else 0
            later = max(later, extra - down)
    return loss, first, later


def first_block(
    cfg: ModelConfig, c: Chunk, batch: int, seq: int, a: int, attention: str
) -> tuple[int, int, int]:
    """In a chunk's first backward, at its first block's MLP peak (the other end from its last
    block, where the peak is when a block's gradients outweigh its saved tensors): (parameters
    whose gradients exist: the blocks after it, the head, its down projection; saved bytes
    still alive: its own, RoPE's, the embeddings'; its transient)."""
    local, moe = layer_kind(cfg, c.first_layer)
    saved = layer_activations(cfg, batch, seq, a, attention, local, moe)
    own = sum(saved.values()) - (0 if c.is_first else saved.get("x", 0))
    parts = chunk_saved(cfg, c, batch, seq, a, attention)
    extra = block_backward_peak(cfg, batch, seq, a, attention, saved) - sum(saved.values())
    if c.layers == 1 and not c.is_last:  # its incoming gradient is the receive buffer
        extra -= 2 * batch * seq * cfg.d_model * a
    embeddings = parameter_count(chunk_parameters(cfg, Chunk(c.index, 0, 0, c.is_first, False)))
    made = parameter_count(chunk_parameters(cfg, c))[0] - embeddings[0] - sum(block_sizes(cfg)[moe])
    made += down_projection(cfg, moe)
    return made, own + parts["rope"] + parts["embeddings"], extra


def down_projection(cfg: ModelConfig, moe: bool) -> int:
    """Parameters of a dense block's down projection (the first gradient its backward makes)."""
    return 0 if moe else cfg.d_model * cfg.d_ff + (cfg.d_model if cfg.mlp_bias else 0)


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
         + one backward's transient (backward_transients)
         + under 1f1b, the gradient the previous backward sent (n·d·a, see below)
         + the batch's token ids (first stage) and targets (last), b·M·s int64 each, and the
           last stage's M fp32 losses;
    or, if larger, the optimizer step's: the states, the buffers and batch, and the gradients
    as the step reads them.
    Moments taken in each backward: at the loss (last chunk); at the LM head's backward (last
    chunk: the logits' and hidden state's gradients, and the head weight's, fresh beside .grad
    once one exists); in the chunk's last block (block_backward_peak). A chunk's first
    backward also in its first block (first_block) and at its end (its gradients made, its
    saved tensors gone). Its later backwards (gradients accumulate) also at the last block's
    down projection, whose weight's fresh gradient is alive beside .grad, and on the first
    chunk at the embedding's (its dense V·d gradient beside .grad, and the n·d·a gradient
    flowing into it). Checked exact against torch.distributed.pipelining on dense models
    (tests/parallel/test_pipeline.py); on MoE ones within 0.02% (mixtral-8x7b on 8 layers)."""
    check_pipeline(cfg.n_layers, pp, schedule, microbatches, virtual)
    p = PRECISION[precision]
    a, n, d, V = p.activation, batch * seq, cfg.d_model, cfg.vocab_size
    chunks = {c: chunk(cfg, pp, c, virtual) for c in rank_chunks(pp, rank, virtual)}
    parts_saved = {i: chunk_saved(cfg, c, batch, seq, a, attention) for i, c in chunks.items()}
    saved = {i: sum(parts.values()) for i, parts in parts_saved.items()}
    # in a block's backward the head's saved tensors (last chunk) are gone
    in_blocks = {i: parts["head"] for i, parts in parts_saved.items()}
    output = {i: n * (V if c.is_last else d) * a for i, c in chunks.items()}
    transient = {
        i: backward_transients(cfg, c, batch, seq, a, attention) for i, c in chunks.items()
    }
    # at a block's peak in its first backward, the gradient its MLP's down projection made
    # (dense blocks; the last layer of the chunk is the first to run backward)
    down = {
        i: down_projection(cfg, layer_kind(cfg, c.first_layer + c.layers - 1)[1])
        for i, c in chunks.items()
    }
    firsts = {i: first_block(cfg, c, batch, seq, a, attention) for i, c in chunks.items()}
    groups = {i: chunk_parameters(cfg, c) for i, c in chunks.items()}
    counts = {i: parameter_count(g) for i, g in groups.items()}
    n_params = sum(params for params, _ in counts.values())
    n_tensors = sum(tensors for _, tensors in counts.values())
    counters = 4 * n_tensors if optimizer == "adamw" else 0
    receives = sum(not c.is_first for c in chunks.values()) + sum(
        not c.is_last for c in chunks.values()
    )
    first, last = (any(getattr(c, k) for c in chunks.values()) for k in ("is_first", "is_last"))
    base = {
        "weights": n_params * p.weight,
        "optimizer": STATE_TENSORS[optimizer] * n_params * p.state + counters + n_params * p.master,
        "p2p_buffers": receives * microbatches * n * d * a,
        "batch": (first + last) * microbatches * n * 8 + (microbatches * 4 if last else 0),
    }
    head_weight = V * d + (V if cfg.lm_head_bias else 0)
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
            "gradient_in_send": sending,
        }
        if sum(parts.values()) > best[0]:
            best = (sum(parts.values()), parts, at)

    # Schedule1F1B keeps the last backward's send ops (and so the gradient they send, n·d·a)
    # in a local variable until the next backward has run (its bwd_sends, fused with the
    # next forward's receive)
    sending = 0
    for op, c, mb in order:
        if op == "F":
            alive += saved[c]
            outputs += output[c]
            moment(f"forward of chunk {c}, microbatch {mb}", grads, alive, outputs, 0)
            continue
        mine = counts[c][0] * p.grad
        at = f"backward of chunk {c}, microbatch {mb}"
        loss, block, block_later = transient[c]
        moment(at + (" (loss)" if loss else ""), grads, alive, outputs, loss)
        if chunks[c].is_last:  # the LM head's backward, the log-softmax's saved output freed:
            # the logits' and the hidden state's gradients and the weight's (fresh, beside
            # .grad after the first backward; .grad itself in the first)
            head = head_weight * p.grad
            grads_then = grads + (0 if c in done else head)
            extra = n * V * a + n * d * a + (head if c in done else 0)
            moment(at + " (LM head)", grads_then, alive - n * V * 4, outputs, extra)
        if c in done:
            moment(at, grads, alive - in_blocks[c], outputs, block_later)
            if down[c]:  # its weight's fresh gradient beside .grad, and its input's gradient
                stream = n * d * a if chunks[c].is_last else 0  # else the receive buffer
                made = down[c] * p.grad + n * cfg.d_ff * a + stream
                moment(at + " (down projection)", grads, alive - in_blocks[c], outputs, made)
            if chunks[c].is_first:  # a fresh dense V·d gradient, then added to .grad
                embedding = cfg.vocab_size * d * p.grad + n * d * a
                moment(at + " (embedding)", grads, alive - saved[c], outputs, embedding)
        else:
            moment(at, grads + down[c] * p.grad, alive - in_blocks[c], outputs, block)
            made, remaining, extra = firsts[c]
            first_at = at + " (first block)"
            moment(first_at, grads + made * p.grad, alive - saved[c] + remaining, outputs, extra)
            moment(at + " (end)", grads + mine, alive - saved[c], outputs, 0)
            grads += mine
            done.add(c)
        alive -= saved[c]
        outputs -= output[c]
        if schedule == "1f1b" and not chunks[c].is_first:
            sending = n * d * a
    # the optimizer step: every gradient as it reads them (fp32 in mixed precision, made one
    # tensor at a time: memory/parameters.py's conversion_excess), no activations
    in_order = [group for i in chunks for group in groups[i]]
    excess = conversion_excess(in_order) if precision == "mixed" else 0
    sending = 0
    moment("optimizer step", n_params * p.step_grad + excess, 0, 0, 0)
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

"""Pipeline parallelism traced: one rank's part of llmcalc's model run through torch's own
torch.distributed.pipelining (PipelineStage with ScheduleGPipe, Schedule1F1B or
ScheduleInterleaved1F1B) on the fake process group and FakeTensorMode, storage by storage
(memory/trace.py's StorageTracker), with every point-to-point tensor recorded.

One departure from torch, stated: the schedule's first step runs a warm-up vote between the
stages (_PipelineSchedule._warmup_p2p) that reads the peers' answer with `result.item()`; a
fake tensor has no value (DataDependentOutputException: aten._local_scalar_dense.default), so
the trace sets the mode the vote returns when every stage is given its input and output
shapes, InferenceMode.STATIC, and torch runs everything else itself.

Categories beyond the tracker's: 'p2p_buffers' (the receive buffers PipelineStage allocates
for every microbatch), 'inputs' (the batch's token ids and targets, held all step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_leaves

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.trace import StorageTracker, track_model_state
from llmcalc.memory.train_step import (
    MasterWeights,
    create_optimizer_state,
    optimizer_for,
    precision_dtype,
)
from llmcalc.model.layers import rope_tables, sinusoidal_table
from llmcalc.model.transformer import build_model
from llmcalc.parallel.pipeline import check_pipeline, chunk, rank_chunks

EXTRA = ("p2p_buffers", "inputs")


class StageModule(nn.Module):
    """Chunk `c` of llmcalc's model (pipeline.py's partition): its blocks, the embeddings on the
    first chunk, the final norm and LM head on the last; the code of Transformer.forward."""

    def __init__(self, model: nn.Module, first: int, count: int, is_first: bool, is_last: bool):
        super().__init__()
        self.cfg = cfg = model.cfg
        self.is_first, self.is_last = is_first, is_last
        if is_first:  # the model's order: mixed precision converts gradients in it
            self.tok_embeddings = model.tok_embeddings
            self.pos_embeddings = getattr(model, "pos_embeddings", None)
            self.embedding_norm = model.embedding_norm
        self.layers = nn.ModuleList(model.layers[first : first + count])
        if is_last:
            self.final_norm = model.final_norm
            self.lm_head = model.lm_head
            if cfg.tie_embeddings and not is_first:  # its own copy on the last stage
                self.lm_head.weight = nn.Parameter(torch.empty_like(model.lm_head.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        seq = x.shape[1]
        if self.is_first:
            tokens = x
            x = self.tok_embeddings(tokens)
            if cfg.scale_embeddings:
                x = x * torch.tensor(cfg.d_model**0.5, dtype=x.dtype, device=x.device)
            if cfg.embedding_multiplier is not None:
                x = x * cfg.embedding_multiplier
            if cfg.position == "learned":
                first = cfg.position_offset
                x = x + self.pos_embeddings(torch.arange(first, first + seq, device=x.device))
            elif cfg.position == "sinusoidal":
                x = x + sinusoidal_table(seq, cfg.d_model, x.device).to(x.dtype)
            x = self.embedding_norm(x)
        rope = rope_tables(cfg, 0, seq, x.device, x.dtype) if cfg.position == "rope" else None
        for layer in self.layers:
            x = layer(x, None, rope)
        if not self.is_last:
            return x
        logits = self.lm_head(self.final_norm(x))
        if cfg.logit_softcap is not None:
            logits = torch.tanh(logits / cfg.logit_softcap) * cfg.logit_softcap
        if cfg.logit_scale is not None:
            logits = logits * cfg.logit_scale
        return logits


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss torch's schedule applies to the last stage's output (as the model's own)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


class PipelineTracker(StorageTracker):
    """StorageTracker with the receive buffers and the batch apart, the peak of saved
    activations on its own, and every point-to-point tensor's bytes."""

    def __init__(self) -> None:
        super().__init__()
        for name in EXTRA:
            self.totals[name] = 0
        self.saved_top = 0
        self.sent: list[int] = []
        self.received: list[int] = []

    def _note_peak(self) -> None:
        super()._note_peak()
        self.saved_top = max(self.saved_top, self.totals["activations"])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func.__name__
        if func.namespace == "c10d" and name.startswith(("send", "recv")):
            tensors = [t for t in tree_leaves(args) if isinstance(t, torch.Tensor)]
            nbytes = sum(t.numel() * t.element_size() for t in tensors)
            (self.sent if name.startswith("send") else self.received).append(nbytes)
        return super().__torch_dispatch__(func, types, args, kwargs)


@dataclass(frozen=True)
class TracedStage:
    peak: int
    phase: str  # 'pipeline' (the schedule's forwards and backwards) or 'optimizer'
    categories: dict[str, int]  # at the peak
    saved_peak: int  # most saved-activation bytes alive at once
    in_flight: int  # most forwards whose saved tensors were alive at once
    sent: list[int]  # bytes of each tensor sent, in order
    received: list[int]


def trace_pipeline_rank(
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
) -> TracedStage:
    """One steady-state training step on rank `rank` of a pp-stage pipeline, traced: the
    optimizer state made first (memory/train_step.py), one untraced step (torch makes its
    receive buffers in it, kept for every later step), then the schedule's step of M
    microbatches of (batch, seq) and the optimizer step, traced. The process group is the
    fake one (every send and receive returns at once), destroyed at the end."""
    from torch.distributed.pipelining import (
        PipelineStage,
        Schedule1F1B,
        ScheduleGPipe,
        ScheduleInterleaved1F1B,
    )
    from torch.distributed.pipelining.stage import InferenceMode
    from torch.testing._internal.distributed.fake_pg import FakeStore

    check_pipeline(cfg.n_layers, pp, schedule, microbatches, virtual)
    dtype = precision_dtype(precision)
    dist.init_process_group("fake", rank=rank, world_size=pp, store=FakeStore())
    tracker = PipelineTracker()
    try:
        with FakeTensorMode():
            model = build_model(cfg, "cpu", dtype, attention)
            chunks = [chunk(cfg, pp, c, virtual) for c in rank_chunks(pp, rank, virtual)]
            modules = [
                StageModule(model, c.first_layer, c.layers, c.is_first, c.is_last) for c in chunks
            ]
            del model
            holder = nn.ModuleList(modules)
            opt = optimizer_for(holder, precision, optimizer)
            create_optimizer_state(holder, opt)
            track_model_state(tracker, holder, opt)
            stages = []
            for c, module in zip(chunks, modules, strict=True):
                shape = (batch, seq, cfg.d_model)
                example = (
                    torch.randint(0, cfg.vocab_size, (batch, seq))
                    if c.is_first
                    else torch.empty(shape, dtype=dtype, requires_grad=True)
                )
                out_shape = (batch, seq, cfg.vocab_size) if c.is_last else shape
                output = torch.empty(out_shape, dtype=dtype, requires_grad=True)
                stages.append(
                    PipelineStage(
                        module,
                        c.index,
                        pp * virtual,
                        torch.device("cpu"),
                        input_args=example,
                        output_args=output,
                    )
                )
            if schedule == "interleaved":
                runner = ScheduleInterleaved1F1B(stages, microbatches, loss_fn=next_token_loss)
            else:
                kind = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
                runner = kind(stages[0], microbatches, loss_fn=next_token_loss)

            def vote(stages_: list, has_backward: bool, done: bool) -> None:
                for stage in stages_:
                    stage._inference_mode = InferenceMode.STATIC

            runner._warmup_p2p = vote
            tokens = torch.randint(0, cfg.vocab_size, (batch * microbatches, seq))
            targets = tokens.roll(-1, dims=1)
            kwargs = {}
            if any(c.is_last for c in chunks):
                kwargs = {"target": targets, "losses": []}
                tracker.track(targets, "inputs")
            args = (tokens,) if any(c.is_first for c in chunks) else ()
            if args:
                tracker.track(tokens, "inputs")
            del tokens, targets
            # a first step, untraced, makes the receive buffers (kept for every later step)
            runner.step(*args, return_outputs=False, **kwargs)
            for param in holder.parameters():  # as after an optimizer step (MasterWeights
                param.grad = None  # frees the bf16 ones; its zero_grad clears the fp32 ones)
            mark_buffers(tracker, stages)
            counter = count_in_flight(stages)
            for param in holder.parameters():
                param.register_post_accumulate_grad_hook(
                    lambda p: tracker.track(p.grad, "gradients")
                )
            if isinstance(opt, MasterWeights):  # mixed: the fp32 gradients made in the step
                opt.on_fp32_grad = lambda master: tracker.track(master.grad, "gradients")
            hooks = torch.autograd.graph.saved_tensors_hooks(tracker.pack_saved, lambda t: t)
            with tracker, hooks:
                tracker.enter_phase("pipeline")
                runner.step(*args, return_outputs=False, **kwargs)
                tracker.enter_phase("optimizer")
                opt.step()
    finally:
        dist.destroy_process_group()
    phase = max(("pipeline", "optimizer"), key=lambda name: tracker.peaks[name].total)
    peak = tracker.peaks[phase]
    return TracedStage(
        peak.total,
        phase,
        peak.categories,
        tracker.saved_top,
        counter["top"],
        tracker.sent,
        tracker.received,
    )


def mark_buffers(tracker: PipelineTracker, stages: list) -> None:
    for stage in stages:
        for infos in list(stage.args_recv_info.values()) + list(stage.grad_recv_info.values()):
            for info in infos:
                if getattr(info, "buffer", None) is not None:
                    tracker.track(info.buffer, "p2p_buffers")


def count_in_flight(stages: list) -> dict[str, int]:
    """Count the forwards whose backward has not run yet, at most, across the rank's stages."""
    counter = {"now": 0, "top": 0}
    for stage in stages:
        forward, backward = stage.forward_one_chunk, stage.backward_one_chunk

        def forward_one(*args, forward=forward, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            counter["now"] += 1
            counter["top"] = max(counter["top"], counter["now"])
            return forward(*args, **kwargs)

        def backward_one(*args, backward=backward, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            counter["now"] -= 1
            return backward(*args, **kwargs)

        stage.forward_one_chunk, stage.backward_one_chunk = forward_one, backward_one
    return counter

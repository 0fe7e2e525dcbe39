"""Measured memory: one real training step (train_step.py, the code the trace runs) on a real
device with random tokens.

CUDA: the peak of torch.cuda.max_memory_allocated and max_memory_reserved over the step, with
the weights and the optimizer state already in place. Both leave out the CUDA context (a few
hundred MiB that the driver holds outside PyTorch's allocator). CPU: the same dispatch-level
tracker as the traced mode, over real tensors, plus the process's peak resident memory.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass

import torch

from llmcalc.config.schema import ModelConfig
from llmcalc.errors import RunFailed
from llmcalc.memory.train_step import build_for_training, create_optimizer_state, training_step
from llmcalc.model.limits import check_step, real_allocation


@dataclass(frozen=True)
class Measured:
    device: str  # in words, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu'
    peak: int  # peak tensor bytes (CUDA: max_memory_allocated; CPU: the storage tracker)
    reserved: int | None  # CUDA: peak bytes the caching allocator held; None on CPU
    rss: int | None = None  # CPU: peak resident memory of the process

    @property
    def fragmentation(self) -> int | None:
        return None if self.reserved is None else self.reserved - self.peak


def measure_training(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    precision: str,
    optimizer: str,
    checkpointing: str,
    attention: str,
    device: str,
    on_progress: Callable[[str], None] = lambda step: None,
) -> Measured:
    """One real training step on `device` ('cuda' or 'cpu'); the caller has checked the fit.
    CUDA or the CPU allocator running out of memory anyway becomes RunFailed (one line, exit
    code 1)."""
    check_step(cfg, batch, seq, attention)
    with real_allocation(f"--measure on {device}"):  # the CPU allocator failing
        try:
            on_progress("building the model")
            model, opt = build_for_training(cfg, precision, optimizer, device, attention)
            on_progress("creating the optimizer state")
            create_optimizer_state(model, opt)
            tokens = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                training_step(model, opt, tokens, checkpointing, on_progress)
                torch.cuda.synchronize()
                return Measured(
                    device=torch.cuda.get_device_name(),
                    peak=torch.cuda.max_memory_allocated(),
                    reserved=torch.cuda.max_memory_reserved(),
                )
            from llmcalc.memory.trace import StorageTracker, track_model_state

            tracker = StorageTracker()
            track_model_state(tracker, model, opt)
            tracker.track(tokens, "other")
            with tracker:
                training_step(model, opt, tokens, checkpointing, on_progress)
            peak = max(phase.total for phase in tracker.peaks.values())
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return Measured(device="cpu", peak=peak, reserved=None, rss=rss)
        except torch.cuda.OutOfMemoryError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else "out of memory"
            message = f"--measure: CUDA ran out of memory during the step ({first_line})"
            raise RunFailed(message) from exc

"""Traced memory: one real training step (or a prefill) of the real model under torch's
FakeTensorMode, where tensors have shapes, dtypes and storages but no data, so any model size
costs no memory. A dispatch-level tracker sees every tensor an op creates and follows its
storage until it is freed (views share a storage and count once), keeping the running total and
its peak in each phase, split by category:

    weights      the model's parameters
    gradients    parameter gradients (including mixed precision's fp32 copies)
    optimizer    optimizer state (and mixed precision's fp32 master weights)
    kv_cache     the inference KV cache
    activations  tensors autograd saved for the backward pass (saved_tensors_hooks)
    other        everything else alive: logits, loss buffers, gradients in flight, temporaries

The figures are tensor bytes, as torch.cuda.max_memory_allocated reports them less the
allocator's rounding of each block to 512 bytes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.formula import CATEGORIES as TRAINING_CATEGORIES
from llmcalc.memory.train_step import (
    PHASES,
    LossFn,
    MasterWeights,
    create_optimizer_state,
    next_token_loss,
    optimizer_for,
    precision_dtype,
    training_step,
)
from llmcalc.model.attention import KVCache
from llmcalc.model.limits import check_step
from llmcalc.model.transformer import build_model

CATEGORIES = (*TRAINING_CATEGORIES, "kv_cache")


@dataclass(frozen=True)
class PhasePeak:
    total: int
    categories: dict[str, int]  # category -> bytes at the moment of the peak


@dataclass(frozen=True)
class TracedMemory:
    peak: int
    peak_phase: str
    phases: dict[str, PhasePeak]  # 'forward' | 'backward' | 'optimizer' | 'prefill' -> peak
    saved: int  # activation bytes kept for backward, as the backward pass begins
    gradients: int  # all gradients as the optimizer step read them (fp32 in mixed precision)

    @property
    def categories(self) -> dict[str, int]:
        return self.phases[self.peak_phase].categories

    @property
    def optimizer_state(self) -> int:
        return self.phases["forward"].categories["optimizer"]


class StorageTracker(TorchDispatchMode):
    """Running bytes of every live storage created by an op (or registered), by category."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list] = {}  # id(storage) -> [nbytes, category, weakref]
        self.totals = dict.fromkeys(CATEGORIES, 0)
        self.current = 0
        self.phase = "setup"
        self.peaks: dict[str, PhasePeak] = {}
        self.at_start: dict[str, dict[str, int]] = {}  # phase -> category bytes as it began

    # -- bookkeeping ---------------------------------------------------------------------------

    def track(self, tensor: torch.Tensor, category: str, move: bool = True) -> None:
        """Count the tensor's storage under `category`; if already counted, move it there
        (unless `move` is False: an op's output that is a view or an in-place result)."""
        storage = tensor.untyped_storage()
        key = id(storage)
        entry = self.live.get(key)
        if entry is None:
            ref = weakref.ref(storage, lambda _, key=key: self._free(key))
            entry = self.live[key] = [storage.nbytes(), category, ref]
            self.totals[category] += entry[0]
            self.current += entry[0]
            self._note_peak()
        elif move and entry[1] != category:
            self.totals[entry[1]] -= entry[0]
            self.totals[category] += entry[0]
            entry[1] = category

    def _free(self, key: int) -> None:
        nbytes, category, _ = self.live.pop(key)
        self.totals[category] -= nbytes
        self.current -= nbytes

    def _note_peak(self) -> None:
        peak = self.peaks.get(self.phase)
        if peak is None or self.current > peak.total:
            self.peaks[self.phase] = PhasePeak(self.current, dict(self.totals))

    def enter_phase(self, phase: str) -> None:
        self.phase = phase
        self.at_start[phase] = dict(self.totals)
        self._note_peak()

    def category_of(self, tensor: torch.Tensor) -> str | None:
        entry = self.live.get(id(tensor.untyped_storage()))
        return entry[1] if entry else None

    # -- hooks ---------------------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(leaf, "other", move=False)
        return out

    def pack_saved(self, tensor: torch.Tensor) -> torch.Tensor:
        """saved_tensors_hooks pack: a tensor autograd keeps for backward is an activation,
        unless it is a parameter (a weight saved by a matmul)."""
        if self.category_of(tensor) in (None, "other"):
            self.track(tensor, "activations")
        return tensor


def track_model_state(tracker: StorageTracker, model: torch.nn.Module, optimizer: object) -> None:
    """Count the weights, any buffers (other) and the optimizer state that exist before the step."""
    for param in model.parameters():
        tracker.track(param, "weights")
    for buffer in model.buffers():  # DeepSeek-V3's score correction; transformers' inv_freq
        tracker.track(buffer, "other")
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                tracker.track(value, "optimizer")
    for master in getattr(optimizer, "masters", []):
        tracker.track(master, "optimizer")


def trace_training(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    attention: str = "sdpa",
) -> TracedMemory:
    """Peak memory of one steady-state training step of llmcalc's model, traced on fake tensors."""
    check_step(cfg, batch, seq, attention)

    def build() -> torch.nn.Module:
        return build_model(cfg, "cpu", precision_dtype(precision), attention)

    return trace_module_training(
        build, cfg.vocab_size, batch, seq, precision, optimizer, checkpointing
    )


def trace_module_training(
    build: Callable[[], torch.nn.Module],
    vocab_size: int,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    loss_fn: LossFn = next_token_loss,
    tracker: StorageTracker | None = None,
) -> TracedMemory:
    """Peak memory of one steady-state training step of any model on (batch, seq) tokens, traced
    on fake tensors: `build()` makes the model in the precision's dtype on the CPU (called under
    FakeTensorMode: no storage), `loss_fn(model, tokens)` its loss; `tracker` one that records
    more (parallel/expert_plan.py's collectives)."""
    tracker = tracker or StorageTracker()
    with FakeTensorMode(allow_non_fake_inputs=False):
        model = build()
        opt = optimizer_for(model, precision, optimizer)
        create_optimizer_state(model, opt)
        track_model_state(tracker, model, opt)
        tokens = torch.randint(0, vocab_size, (batch, seq))
        tracker.track(tokens, "other")

        def on_phase(phase: str) -> None:
            if phase == "optimizer":  # every gradient now exists
                for param in model.parameters():
                    tracker.track(param.grad, "gradients")
            tracker.enter_phase(phase)

        def mark_gradient(param: torch.Tensor) -> None:
            tracker.track(param.grad, "gradients")

        handles = [p.register_post_accumulate_grad_hook(mark_gradient) for p in model.parameters()]
        if isinstance(opt, MasterWeights):  # mixed: the fp32 gradients made in the step
            opt.on_fp32_grad = mark_gradient
        hooks = torch.autograd.graph.saved_tensors_hooks(tracker.pack_saved, lambda t: t)
        with tracker, hooks:
            training_step(model, opt, tokens, checkpointing, on_phase, loss_fn)
        for handle in handles:
            handle.remove()
    return traced_result(tracker, PHASES)


def trace_prefill(cfg: ModelConfig, batch: int, seq: int, dtype: torch.dtype) -> TracedMemory:
    """Peak memory of an inference prefill of `seq` tokens that fills a KV cache of `seq`."""
    check_step(cfg, batch, seq)
    tracker = StorageTracker()
    with FakeTensorMode(), torch.no_grad():
        model = build_model(cfg, device="cpu", dtype=dtype)
        for tensor in [*model.parameters(), *model.buffers()]:  # buffers: DeepSeek's correction
            tracker.track(tensor, "weights")
        tokens = torch.randint(0, cfg.vocab_size, (batch, seq))
        with tracker:
            tracker.enter_phase("prefill")
            cache = KVCache(cfg, batch, seq, "cpu", dtype)
            for tensor in cache.keys + cache.values:
                tracker.track(tensor, "kv_cache")
            model(tokens, cache=cache)
    return traced_result(tracker, ("prefill",))


def traced_result(tracker: StorageTracker, phases: tuple[str, ...]) -> TracedMemory:
    peaks = {phase: tracker.peaks[phase] for phase in phases}
    top = max(phases, key=lambda phase: peaks[phase].total)
    saved = tracker.at_start.get("backward", {}).get("activations", 0)
    gradients = tracker.at_start.get("zero_grad", {}).get("gradients", 0)
    return TracedMemory(peaks[top].total, top, peaks, saved, gradients)

"""The data behind `llmcalc flops`: analytic FLOPs per component beside the counters' figures on
the real model, the published conventions, inference and a training budget.

Python API: `analyze_flops(load_config("llama-3-8b"), seq=8192)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmcalc.config.experts import is_latent
from llmcalc.config.schema import ModelConfig
from llmcalc.flops.conventions import Convention, conventions
from llmcalc.flops.formula import (
    ForwardFlops,
    PrefillFlops,
    StepFlops,
    absorbed_decode_flops,
    decode_flops,
    forward_flops,
    prefill_flops,
    step_flops,
)

if TYPE_CHECKING:  # torch is imported only when the counters run
    from llmcalc.flops.count import CountedFlops


@dataclass(frozen=True)
class Budget:
    tokens: int
    model_flops: int  # training FLOPs for `tokens` tokens (MFU's numerator)
    hardware_flops: int  # with recomputation
    peak_flops_per_gpu: float | None  # FLOP/s
    gpus: int
    mfu: float

    @property
    def seconds(self) -> float | None:
        if self.peak_flops_per_gpu is None:
            return None
        return self.model_flops / (self.peak_flops_per_gpu * self.mfu * self.gpus)

    @property
    def gpu_hours(self) -> float | None:
        return None if self.seconds is None else self.seconds * self.gpus / 3600


@dataclass(frozen=True)
class FlopsAnalysis:
    config: ModelConfig
    batch: int
    seq: int
    recompute: str
    forward: ForwardFlops  # analytic
    counted: CountedFlops | None  # None with --no-count
    step: StepFlops
    conventions: list[Convention]
    prefill: PrefillFlops  # of the batch: batch × seq tokens, the LM head two ways
    decode_position: int
    decode: int  # matmul FLOPs of generating the token at decode_position, one sequence
    budget: Budget | None
    # latent attention: the same decode step with kv_b absorbed into q and o (None without MLA)
    decode_absorbed: int | None = None

    @property
    def step_causal(self) -> StepFlops:
        """The training step with only the causal half of each attention matrix."""
        return step_flops(self.config, self.forward, self.recompute, causal=True)

    @property
    def analytic_merged(self) -> dict[str, int]:
        from llmcalc.flops.count import merge_attention_core

        return merge_attention_core(self.forward.matmul)

    @property
    def mismatches(self) -> dict[str, dict[str, int]]:
        """Where the counters disagree with the analytic matmul FLOPs (fvcore only if it ran)."""
        found: dict[str, dict[str, int]] = {}
        if self.counted is None:
            return found
        analytic = self.analytic_merged
        for name, counted in (
            ("torch", self.counted.torch_forward),
            ("fvcore", self.counted.fvcore_forward),
        ):
            if counted is None:
                continue
            for component, value in analytic.items():
                if counted.get(component) != value:
                    found[f"{name}:{component}"] = {
                        "analytic": value,
                        "counted": counted.get(component, 0),
                    }
        for name, analytic_value, counted_value in (
            ("torch:backward", self.step.backward, self.counted.torch_backward),
            ("torch:recompute", self.step.recompute, self.counted.torch_recompute),
            (
                "torch:recompute_early_stop",
                self.step.recompute_early_stop,
                self.counted.torch_recompute_early_stop,
            ),
        ):
            if counted_value is not None and counted_value != analytic_value:
                found[name] = {"analytic": analytic_value, "counted": counted_value}
        return found


def analyze_flops(
    cfg: ModelConfig,
    batch: int = 1,
    seq: int | None = None,
    recompute: str = "none",
    decode_position: int | None = None,
    tokens: int | None = None,
    peak_flops_per_gpu: float | None = None,
    gpus: int = 1,
    mfu: float = 0.4,
    one_block: bool = True,
    count: bool = True,
) -> FlopsAnalysis:
    """Analytic FLOPs, counted on the meta model two ways, conventions, inference and budget."""
    from llmcalc.flops.count import count_flops

    seq = cfg.max_seq_len if seq is None else seq
    forward = forward_flops(cfg, batch, seq)
    step = step_flops(cfg, forward, recompute)
    # default: the last token of a seq-token context (position seq − 1, over seq keys)
    position = seq - 1 if decode_position is None else decode_position
    budget = None
    if tokens is not None:
        step_tokens = batch * seq
        budget = Budget(
            tokens=tokens,
            model_flops=step.model * tokens // step_tokens,
            hardware_flops=step.hardware * tokens // step_tokens,
            peak_flops_per_gpu=peak_flops_per_gpu,
            gpus=gpus,
            mfu=mfu,
        )
    return FlopsAnalysis(
        config=cfg,
        batch=batch,
        seq=seq,
        recompute=recompute,
        forward=forward,
        counted=count_flops(cfg, batch, seq, one_block, recompute == "full") if count else None,
        step=step,
        conventions=conventions(cfg, batch, seq, recompute),
        prefill=prefill_flops(cfg, batch, seq),
        decode_position=position,
        decode=decode_flops(cfg, position),
        budget=budget,
        decode_absorbed=absorbed_decode_flops(cfg, position) if is_latent(cfg) else None,
    )

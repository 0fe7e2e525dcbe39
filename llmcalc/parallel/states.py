"""Model states per GPU under ZeRO (Rajbhandari et al. 2020, 'ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models', section 5 and Table 1): what each of the N_d data-parallel
ranks holds of the weights, the gradients and the optimizer state. No torch.

    stage 0   everything replicated                      (2 + 2 + K) · Ψ
    stage 1   optimizer state partitioned (P_os)          2Ψ + 2Ψ + K·Ψ / N_d
    stage 2   and gradients (P_os+g)                      2Ψ + (2 + K) · Ψ / N_d
    stage 3   and parameters (P_os+g+p)                   (2 + 2 + K) · Ψ / N_d

with the paper's mixed-precision Adam convention: 2 bytes of fp16 weights, 2 of fp16 gradients and
K = 12 of fp32 master weights, momentum and variance. How torch realises each stage, and what
llmcalc's precisions store per parameter, is in parallel/data_plan.py and memory/formula.py.
"""

from __future__ import annotations

from dataclasses import dataclass

ZERO_PAPER_BYTES = {"weights": 2, "gradients": 2, "optimizer": 12}  # ZeRO section 3.1


@dataclass(frozen=True)
class ModelStates:
    weights: int
    gradients: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer


def partitioned(total: int, ranks: int) -> int:
    """One rank's part of `total` bytes split over `ranks` (the largest part: ceiling)."""
    return -(-total // ranks)


def zero_model_states(
    weights: int, gradients: int, optimizer: int, stage: int, ranks: int
) -> ModelStates:
    """Per-rank bytes of model states whose unpartitioned sizes are given, at ZeRO `stage` over
    `ranks` data-parallel ranks."""
    return ModelStates(
        weights=partitioned(weights, ranks) if stage >= 3 else weights,
        gradients=partitioned(gradients, ranks) if stage >= 2 else gradients,
        optimizer=partitioned(optimizer, ranks) if stage >= 1 else optimizer,
    )


def zero_paper_model_states(n_params: int, stage: int, ranks: int) -> ModelStates:
    """ZeRO Table 1's figure: model states per GPU of Ψ = n_params under the paper's 16-byte
    mixed-precision Adam convention."""
    return zero_model_states(
        *(n_params * ZERO_PAPER_BYTES[k] for k in ("weights", "gradients", "optimizer")),
        stage=stage,
        ranks=ranks,
    )

"""The data behind `llmcalc params`: the closed form and the real model's count side by side,
with 12·d² and its exact relatives. Python API: `analyze_params(load_config("gpt2"))`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmcalc.config.dtypes import DTYPE_BYTES
from llmcalc.config.hardware import free_in_words
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import ResourceError
from llmcalc.model.limits import check_buildable, real_allocation
from llmcalc.params.expr import Expr
from llmcalc.params.formula import (
    COMPONENTS,
    ParamFormula,
    group_counts,
    param_formula,
    weight_bytes,
)
from llmcalc.params.relatives import (
    TwelveD2,
    bias_label,
    bias_variants,
    per_layer_polynomial,
    twelve_d2,
)
from llmcalc.units import format_bytes

if TYPE_CHECKING:  # torch is imported only when a model is built, not by config-only commands
    from llmcalc.params.count import ParamCount


@dataclass(frozen=True)
class ParamsAnalysis:
    config: ModelConfig
    formula: ParamFormula
    counted: ParamCount
    twelve: TwelveD2
    layer_polynomial: Expr  # one layer's count reduced to a polynomial (12·d² + 13·d for GPT-2)
    bias_forms: dict[str, Expr]  # 'with bias' / 'without bias' -> per-layer closed form
    bias_label: str  # which one this config is ('with bias', 'without bias' or a per-part mix)
    device: str
    dtype: str

    @property
    def groups(self) -> dict[str, int]:
        return group_counts(self.formula.components)

    @property
    def mismatches(self) -> dict[str, tuple[int, int]]:
        """Component -> (formula, counted) wherever they differ; 'layer_polynomial' when the
        reduced per-layer polynomial disagrees with the term-by-term sum."""
        found = component_mismatches(self.formula, self.counted)
        if self.layer_polynomial.value != self.formula.per_layer.value:
            found["layer_polynomial"] = (self.layer_polynomial.value, self.formula.per_layer.value)
        return found

    @property
    def exact(self) -> bool:
        return not self.mismatches and self.counted.fvcore_total == self.formula.total.value


def component_mismatches(formula: ParamFormula, counted: ParamCount) -> dict[str, tuple[int, int]]:
    return {
        c: (formula.components[c], counted.components.get(c, 0))
        for c in COMPONENTS
        if formula.components[c] != counted.components.get(c, 0)
    }


def analyze_params(cfg: ModelConfig, device: str = "meta", dtype: str = "fp32") -> ParamsAnalysis:
    """Formula and counted parameters of the real model built on `device` (meta: free)."""
    check_buildable(cfg, DTYPE_BYTES[dtype])  # before torch is imported: refused in a blink
    check_weights_fit(cfg, device, dtype)

    from llmcalc.config.dtypes import torch_dtype
    from llmcalc.model.transformer import build_model
    from llmcalc.params.count import count_params

    with real_allocation(f"--device {device}: building the {dtype} weights of {cfg.name}"):
        model = build_model(cfg, device=device, dtype=torch_dtype(dtype))
    return ParamsAnalysis(
        config=cfg,
        formula=param_formula(cfg),
        counted=count_params(model),
        twelve=twelve_d2(cfg),
        layer_polynomial=per_layer_polynomial(cfg),
        bias_forms=bias_variants(cfg),
        bias_label=bias_label(cfg),
        device=device,
        dtype=dtype,
    )


def check_weights_fit(cfg: ModelConfig, device: str, dtype: str) -> None:
    """Refuse, before allocating anything, to build weights that do not fit on the device."""
    if device == "meta":
        return
    needed = weight_bytes(cfg, DTYPE_BYTES[dtype])
    free, limit = free_in_words(device)
    if needed > free:
        raise ResourceError(
            f"--device {device}: the {dtype} weights of {cfg.name} need {format_bytes(needed)} "
            f"({needed:,} bytes) but {format_bytes(free)} is free ({limit}); use --device meta "
            "(the default)"
        )

"""One result object per question, combining formula and counted: the data behind each command.

This is also the Python API: `analyze_params(load_config("gpt2"))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmcalc.config import ModelConfig
from llmcalc.formulas import (
    COMPONENTS,
    Expr,
    ParamFormula,
    TwelveD2,
    bias_label,
    bias_variants,
    group_counts,
    param_formula,
    per_layer_polynomial,
    twelve_d2,
)

if TYPE_CHECKING:  # torch is imported only when a model is built, not by config-only commands
    from llmcalc.count import ParamCount


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
    from llmcalc.count import count_params
    from llmcalc.model import build_model
    from llmcalc.resources import DTYPES, check_weights_fit

    check_weights_fit(cfg, device, dtype)
    model = build_model(cfg, device=device, dtype=DTYPES[dtype])
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


# --- llmcalc check: presets and a grid that turns each variant axis on and off -----------------

_GRID_BASE = dict(
    vocab_size=96, d_model=64, n_layers=2, n_heads=8, max_seq_len=32, activation="swiglu"
)

# Each entry flips one axis (or a pair that interacts) away from the base config.
_GRID_AXES: list[dict] = [
    {},
    {"bias": True},
    {"qkv_bias": True},
    {"out_bias": True},
    {"mlp_bias": True},
    {"bias": True, "activation": "gelu"},
    {"lm_head_bias": True},
    {"tie_embeddings": True},
    {"tie_embeddings": True, "lm_head_bias": True},
    {"norm": "layernorm"},
    {"norm": "layernorm", "norm_bias": False},
    *[
        {"block": block, "norm_position": position, "norm": "layernorm"}
        for block in ("serial", "parallel", "parallel_shared_norm")
        for position in ("pre", "post", "sandwich", "output")
    ],
    {"qk_norm": "head"},
    {"qk_norm": "full"},
    {"qk_norm": "full", "norm": "layernorm", "n_kv_heads": 2},
    *[{"position": p} for p in ("learned", "sinusoidal", "alibi", "none")],
    *[{"activation": a} for a in ("relu", "gelu", "silu", "geglu", "reglu")],
    {"n_kv_heads": 2},
    {"n_kv_heads": 1},
    {"head_dim": 12},
    {"head_dim": 12, "n_kv_heads": 2, "qk_norm": "full"},
    {"multiple_of": 32, "ffn_multiplier": 1.3},
    {"d_ff": 100},
    {"final_norm": False},
]


def grid_configs() -> list[ModelConfig]:
    configs = []
    for axes in _GRID_AXES:
        label = ",".join(f"{k}={v}" for k, v in axes.items()) or "base"
        data = {**_GRID_BASE, **axes, "name": f"grid[{label}]"}
        configs.append(ModelConfig.from_dict(data, origin=f"grid[{label}]"))
    return configs


def check_configs(configs: list[ModelConfig]) -> list[ParamsAnalysis]:
    return [analyze_params(cfg) for cfg in configs]

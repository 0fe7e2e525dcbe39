"""One result object per question, combining formula and counted: the data behind each command.

This is also the Python API: `analyze_params(load_config("gpt2"))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmcalc.config import ModelConfig
from llmcalc.flops import (
    Convention,
    ForwardFlops,
    StepFlops,
    conventions,
    decode_flops,
    forward_flops,
    prefill_flops,
    step_flops,
)
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
    from llmcalc.count_flops import CountedFlops


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
    from llmcalc.resources import check_weights_fit, torch_dtype

    check_weights_fit(cfg, device, dtype)
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


@dataclass(frozen=True)
class CheckResult:
    params: ParamsAnalysis
    flops: FlopsAnalysis  # a small step: matmul FLOPs are exact at any size, and traced fast

    @property
    def exact(self) -> bool:
        return self.params.exact and not self.flops.mismatches


CHECK_BATCH, CHECK_SEQ = 2, 16


def check_configs(configs: list[ModelConfig]) -> list[CheckResult]:
    """Parameters per component, and matmul FLOPs of the forward, the backward and the forward
    recomputed under full checkpointing (with torch's early stop off and on), formula against
    counted."""
    return [
        CheckResult(
            analyze_params(cfg),
            analyze_flops(cfg, batch=CHECK_BATCH, seq=CHECK_SEQ, recompute="full"),
        )
        for cfg in configs
    ]


# --- llmcalc flops ----------------------------------------------------------------------------


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
    prefill: int  # matmul FLOPs of a prefill of `seq` tokens (one sequence)
    decode_position: int
    decode: int  # matmul FLOPs of generating the token at decode_position
    budget: Budget | None

    @property
    def step_causal(self) -> StepFlops:
        """The training step with only the causal half of each attention matrix."""
        return step_flops(self.config, self.forward, self.recompute, causal=True)

    @property
    def analytic_merged(self) -> dict[str, int]:
        from llmcalc.count_flops import merge_attention_core

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
    from llmcalc.count_flops import count_flops

    seq = cfg.max_seq_len if seq is None else seq
    forward = forward_flops(cfg, batch, seq)
    step = step_flops(cfg, forward, recompute)
    position = seq if decode_position is None else decode_position
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
        prefill=prefill_flops(cfg, seq),
        decode_position=position,
        decode=decode_flops(cfg, position),
        budget=budget,
    )

"""What transformers' models save for backward that llmcalc's model does not, where it is known:
one line per cause, read from the config.json. Each was found by comparing the two traces tensor
by tensor (docs/parity.md); the training-peak check prints the causes that apply beside its
figures, so a gap is explained, not hidden. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmcalc.config.schema import ModelConfig

_DROPOUT_FIELDS = (
    "attn_pdrop",
    "embd_pdrop",
    "resid_pdrop",
    "attention_dropout",
    "hidden_dropout",
)


def _dropout(data: dict[str, Any], cfg: ModelConfig, precision: str, seq: int) -> str | None:
    on = {k: data[k] for k in _DROPOUT_FIELDS if isinstance(data.get(k), int | float) and data[k]}
    if not on:
        return None
    fields = ", ".join(f"{k} = {v}" for k, v in on.items())
    return (
        f"dropout is on in training ({fields}); llmcalc's model has none: transformers keeps "
        "each dropout's mask for backward, and attention dropout sends SDPA to its math path "
        "(the T×T probabilities kept)"
    )


def _gelu_fast(data: dict[str, Any], cfg: ModelConfig, precision: str, seq: int) -> str | None:
    act = data.get("activation_function", data.get("hidden_act"))
    if act != "gelu_fast":
        return None
    return (
        "gelu_fast is a Python formula in transformers: backward keeps 6 tensors of n·d_ff per "
        "layer where torch's fused GELU in llmcalc's model keeps 1 (gelu_new is modelled: "
        "activation gelu_new)"
    )


def takes_math_path(data: dict[str, Any], cfg: ModelConfig) -> bool:
    """transformers' Falcon of the old architecture with fewer key/value heads than query heads:
    it always materialises its mask and broadcasts the key/value head without enable_gqa, which
    no fused SDPA kernel takes (modeling_falcon.py), so torch runs its math path."""
    falcon = data.get("model_type") == "falcon" and not data.get("new_decoder_architecture")
    return falcon and cfg.n_kv_heads != cfg.n_heads


def _falcon_mqa(data: dict[str, Any], cfg: ModelConfig, precision: str, seq: int) -> str | None:
    if not takes_math_path(data, cfg):
        return None
    return (
        "transformers' Falcon always materialises its causal mask (allow_is_causal_skip=False) "
        "and hands SDPA one key/value head for all query heads without enable_gqa, so torch "
        "runs its math path, which keeps the T×T probabilities: predicted with --attention "
        "math (the fused kernel, --attention sdpa, keeps O(T) per head)"
    )


def _batched_experts(
    data: dict[str, Any], cfg: ModelConfig, precision: str, seq: int
) -> str | None:
    """transformers' routed experts, as the check runs them (views/parity.py: batched_mm)."""
    if not cfg.n_experts or data.get("model_type", "").startswith("llama4"):
        return None
    return (
        "transformers' experts run as batched_mm here (its default grouped_mm has no fp32 meta "
        "kernel; eager routes through nonzero, which fake tensors cannot run): batched_mm "
        "gathers every routed token's expert weights and keeps them for backward, T·k·3·d·f_e "
        "elements per MoE layer, where llmcalc's grouped dispatch slices the weights in place"
    )


def runs_every_expert(data: dict[str, Any]) -> bool:
    """transformers' Llama 4 (Llama4TextMoe) multiplies every expert on every token, its router's
    scores zero for the unchosen ones (modeling_llama4.py): E/k × the routed experts' work."""
    return str(data.get("model_type", "")).startswith("llama4")


def _every_expert(data: dict[str, Any], cfg: ModelConfig, precision: str, seq: int) -> str | None:
    if not runs_every_expert(data):
        return None
    return (
        "transformers' Llama 4 runs every expert on every token (the unchosen ones scaled by 0), "
        "so it keeps E/k × the routed rows' activations; llmcalc's model runs the k chosen"
    )


CAUSES: list[Callable[[dict[str, Any], ModelConfig, str, int], str | None]] = [
    _dropout,
    _gelu_fast,
    _falcon_mqa,
    _batched_experts,
    _every_expert,
]


def memory_causes(data: dict[str, Any], cfg: ModelConfig, precision: str, seq: int) -> list[str]:
    """The known causes of a training-memory gap that apply to this config.json."""
    return [line for cause in CAUSES if (line := cause(data, cfg, precision, seq))]

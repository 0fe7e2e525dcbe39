"""Fields that contradict each other: a field stated explicitly that has no effect under another
field's value is a conflict (the config says something the model does not do). No torch here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmcalc.errors import LLMCalcError, quote

if TYPE_CHECKING:
    from llmcalc.config.schema import ModelConfig


# A field stated explicitly that has no effect under another field's value is a conflict: the
# config says something the model does not do. (field, the field that overrides it, when it does)
CONFLICTS: tuple[tuple[str, str, Any], ...] = (
    ("rope_theta", "position", lambda cfg: cfg.position != "rope"),
    ("rope_fraction", "position", lambda cfg: cfg.position != "rope"),
    ("rope_concat", "position", lambda cfg: cfg.rope_concat and cfg.position != "rope"),
    ("norm_bias", "norm", lambda cfg: cfg.norm != "layernorm"),
    ("norm_offset", "norm", lambda cfg: cfg.norm_offset and cfg.norm != "rmsnorm"),
    ("layernorm_compute", "norm", lambda cfg: cfg.norm != "layernorm"),
    ("sliding_window_pattern", "sliding_window", lambda cfg: cfg.sliding_window is None),
    ("global_layers", "sliding_window", lambda cfg: cfg.sliding_window is None),
    ("norm_bias", "norm_affine", lambda cfg: cfg.norm == "layernorm" and not cfg.norm_affine),
    ("position_offset", "position", lambda cfg: cfg.position != "learned"),
)


def check_conflicts(cfg: ModelConfig, given: set[str]) -> None:
    for name, other, no_effect in CONFLICTS:
        if name in given and getattr(cfg, name) is not None and no_effect(cfg):
            stated = "" if other in given else " (the default)"
            raise LLMCalcError(
                f"{cfg.origin}: field {name!r} = {quote(getattr(cfg, name))} has no effect with "
                f"{other} = {quote(getattr(cfg, other))}{stated}; remove one of them"
            )

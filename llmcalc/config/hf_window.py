"""Which layers of a Hugging Face config.json attend through a sliding window, as transformers
decides it, in the preset's terms (sliding_window, sliding_window_pattern, global_layers).

transformers 5 states it per layer: `layer_types`, each "full_attention" or "sliding_attention".
Configs saved by transformers 4 say it per family: Mistral and Starcoder2 put every layer behind
`sliding_window` (Mistral's class defaults it to 4096 when the file leaves it out), Qwen2/Qwen3
only with `use_sliding_window`, from layer `max_window_layers` on, Gemma 2 alternates (layer i
is global when i + 1 is even), Gemma 3 makes every `sliding_window_pattern`-th layer global.
"""

from __future__ import annotations

from typing import Any

from llmcalc.config.hf_fields import Fields
from llmcalc.errors import LLMCalcError, quote

_KINDS = ("full_attention", "sliding_attention")
_ABSENT = object()


def nullable(f: Fields, name: str, default: Any) -> Any:
    """A field whose explicit null means "off" (Gemma 3's softcaps), unlike a missing one, which
    takes the class default."""
    if name not in f.data:
        return default
    return None if f.data[name] is None else f.get(name, None)


def window_fields(
    f: Fields, default_window: int | None = None, pattern: int | None = None
) -> dict[str, Any]:
    """The preset fields for the window, {} where every layer is global. `pattern`: the
    family's v4 rule (every pattern-th layer global; None: every layer local)."""
    window = nullable(f, "sliding_window", default_window)
    layers = f.need("num_hidden_layers")
    kinds = f.data.get("layer_types", _ABSENT)
    if kinds is not _ABSENT and kinds is not None:
        if not (isinstance(kinds, list) and len(kinds) == layers and set(kinds) <= set(_KINDS)):
            raise LLMCalcError(
                f"{f.where}: field 'layer_types' = {quote(kinds)}: expected a list of "
                f"{layers} entries, each {' or '.join(repr(k) for k in _KINDS)} (chunked "
                "attention is not modelled)"
            )
        local = [kind == "sliding_attention" for kind in kinds]
    elif window is None:
        return {}
    else:
        local = [pattern is None or (i + 1) % pattern != 0 for i in range(layers)]
    if not any(local):
        return {}
    if window is None:
        raise LLMCalcError(
            f"{f.where}: field 'layer_types' names sliding layers but 'sliding_window' is null"
        )
    return {"sliding_window": window, **_layout(local)}


def qwen_window(f: Fields) -> dict[str, Any]:
    """Qwen2/Qwen3 v4: a window only with use_sliding_window, on layers max_window_layers and up."""
    if "layer_types" in f.data:
        return window_fields(f)
    if not f.get("use_sliding_window", False):
        return {}
    first_local = f.get("max_window_layers", 28)  # Qwen2Config's and Qwen3Config's default
    layers = f.need("num_hidden_layers")
    local = [i >= first_local for i in range(layers)]
    window = f.get("sliding_window", None)
    if not any(local) or window is None:
        return {}
    return {"sliding_window": window, **_layout(local)}


def _layout(local: list[bool]) -> dict[str, Any]:
    """The shortest statement of which layers are global: none, every p-th, or their list."""
    if all(local):
        return {}
    for pattern in range(2, len(local) + 1):
        if all(local[i] == ((i + 1) % pattern != 0) for i in range(len(local))):
            return {"sliding_window_pattern": pattern}
    return {"global_layers": [i for i, is_local in enumerate(local) if not is_local]}

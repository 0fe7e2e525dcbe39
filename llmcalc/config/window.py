"""Sliding-window attention: which layers are local (attend to the last `sliding_window` positions)
and which are global, from the config alone. Counts are arithmetic, never a list n_layers long,
so the closed forms stay instant at any depth. No torch here.

The window follows transformers: a local layer's query at position i sees keys in (i − W, i], W
of them with itself; after a prefill its cache keeps the last W − 1 positions (DynamicSlidingWindow
Layer), which is all the next token needs beside its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmcalc.errors import LLMCalcError, quote

if TYPE_CHECKING:
    from llmcalc.config.schema import ModelConfig


def check_window(cfg: ModelConfig) -> None:
    where = cfg.origin
    if cfg.sliding_window is not None and cfg.sliding_window <= 0:
        raise LLMCalcError(
            f"{where}: field 'sliding_window' = {quote(cfg.sliding_window)}: must be a positive "
            "integer (the positions a local layer attends to)"
        )
    pattern = cfg.sliding_window_pattern
    if pattern is not None and pattern < 2:
        raise LLMCalcError(
            f"{where}: field 'sliding_window_pattern' = {quote(pattern)}: must be 2 or more "
            "(every p-th layer global, the others local; leave it out for all layers local)"
        )
    if pattern is not None and cfg.global_layers is not None:
        raise LLMCalcError(
            f"{where}: fields 'sliding_window_pattern' and 'global_layers' both say which layers "
            "are global; give one"
        )
    layers = cfg.global_layers or []
    bad = [i for i in layers if not 0 <= i < cfg.n_layers]
    if bad or len(set(layers)) != len(layers):
        raise LLMCalcError(
            f"{where}: field 'global_layers' = {quote(cfg.global_layers)}: indices of distinct "
            f"layers, each in 0 .. {cfg.n_layers - 1}"
        )


def is_local(cfg: ModelConfig, layer: int) -> bool:
    """Whether layer `layer` (0-based) attends through the window."""
    if cfg.sliding_window is None:
        return False
    if cfg.global_layers is not None:
        return layer not in cfg.global_layers
    if cfg.sliding_window_pattern is not None:
        return (layer + 1) % cfg.sliding_window_pattern != 0
    return True


def local_layer_count(cfg: ModelConfig) -> int:
    if cfg.sliding_window is None:
        return 0
    if cfg.global_layers is not None:
        return cfg.n_layers - len(cfg.global_layers)
    if cfg.sliding_window_pattern is not None:
        return cfg.n_layers - cfg.n_layers // cfg.sliding_window_pattern
    return cfg.n_layers


def cached_positions(cfg: ModelConfig, layer_is_local: bool, seq: int) -> int:
    """Positions a layer's KV cache holds after `seq` tokens: all of them, or in a local layer
    the last W − 1 (transformers' sliding cache)."""
    if layer_is_local:
        return min(seq, cfg.sliding_window - 1)
    return seq


def keys_per_query(cfg: ModelConfig, layer_is_local: bool, position: int) -> int:
    """Keys the query at 0-based `position` attends to: position + 1, or at most W locally."""
    return min(position + 1, cfg.sliding_window) if layer_is_local else position + 1


def windowed_pairs(window: int, seq: int) -> int:
    """Σ over queries i < seq of min(i + 1, W): the query-key pairs a local layer needs."""
    if seq <= window:
        return seq * (seq + 1) // 2
    return window * (window + 1) // 2 + (seq - window) * window

"""`llmcalc sweep`: one preset, some fields varied over values (their product), the compare
metrics and the training-memory breakdown at each point. Closed forms only: no torch."""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmcalc.config.presets import config_from, parse_value, read_preset
from llmcalc.config.schema import ModelConfig
from llmcalc.config.sizes import MAX_SIZE
from llmcalc.errors import LLMCalcError, quote
from llmcalc.memory.formula import training_memory
from llmcalc.views.compare import ROWS, model_metrics

RUN_FIELDS = ("seq", "batch")  # not config fields: the size of the step
LABELS = ("name", "source")  # config fields that change no figure
MAX_POINTS = 1000  # the default cap on a sweep's points (--max-points raises it)


@dataclass(frozen=True)
class Point:
    values: dict[str, Any]  # varied field -> value at this point
    metrics: dict[str, int | str]
    breakdown: dict[str, int]  # training memory at the peak, by category

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())


def parse_vary(items: list[str], max_points: int = MAX_POINTS) -> list[tuple[str, list[Any]]]:
    """['n_kv_heads=1,8,32', 'seq=1024,4096'] -> [('n_kv_heads', [1, 8, 32]), ...]; a sweep of
    more than max_points points is refused here, before any is computed."""
    allowed = [*ModelConfig.field_names(), *RUN_FIELDS]
    varies: list[tuple[str, list[Any]]] = []
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        shown_item = quote(item)
        if not sep or not name:
            raise LLMCalcError(
                f"--vary {shown_item}: expected field=v1,v2,..., e.g. --vary seq=1024,4096"
            )
        if name in LABELS:
            raise LLMCalcError(
                f"--vary {shown_item}: {name!r} labels the model and changes no figure; vary a "
                "config field that does, seq or batch"
            )
        if name not in allowed:
            varied = [n for n in allowed if n not in ("name", "source")]  # labels, not sizes
            near = difflib.get_close_matches(name[:100], varied, n=2)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise LLMCalcError(
                f"--vary {shown_item}: unknown field {quote(name)}{hint} (any config field, seq "
                "or batch)"
            )
        values = [parse_value(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise LLMCalcError(
                f"--vary {shown_item}: no values; give one or more, e.g. --vary {name}=1,2"
            )
        if name in RUN_FIELDS:
            for value in values:
                whole = isinstance(value, int) and not isinstance(value, bool)
                if not whole or not 0 < value <= MAX_SIZE:
                    raise LLMCalcError(
                        f"--vary {shown_item}: {name} values must be positive integers up to "
                        f"10**30; got {quote(value)}"
                    )
        if any(name == seen for seen, _ in varies):
            raise LLMCalcError(f"--vary {name}: given twice")
        varies.append((name, values))
    if not varies:
        raise LLMCalcError("sweep needs at least one --vary field=v1,v2,...")
    points = math.prod(len(values) for _, values in varies)
    if points > max_points:
        sizes = " × ".join(f"{len(values):,}" for _, values in varies)
        raise LLMCalcError(
            f"--vary: a sweep of {points:,} points ({sizes}) is more than --max-points "
            f"{max_points:,}; raise --max-points to run it"
        )
    return varies


def run_sweep(
    preset: str,
    overrides: dict[str, Any],
    varies: list[tuple[str, list[Any]]],
    batch: int,
    seq: int | None,
    precision: str,
    dtype: str | None,
    on_point: Callable[[str], None] = lambda label: None,
) -> list[Point]:
    points = []
    raw, origin = read_preset(preset)  # read once; each point is validated on its own
    combos = list(itertools.product(*(values for _, values in varies)))
    for index, combo in enumerate(combos):
        values = dict(zip((name for name, _ in varies), combo, strict=True))
        on_point(f"point {index + 1} of {len(combos)}")
        fields = {k: v for k, v in values.items() if k not in RUN_FIELDS}
        cfg = config_from(raw, origin, overrides, fields)
        b = values.get("batch", batch)
        t = values.get("seq", seq if seq is not None else cfg.max_seq_len)
        cfg.seq_warning("--vary seq", t)  # past a learned position table: an error
        training = training_memory(cfg, b, t, precision=precision)
        peak = training.phases[training.peak_phase].categories
        metrics = model_metrics(cfg, b, t, precision, dtype, training)
        points.append(Point(values, metrics, dict(peak)))
    return points


METRICS = tuple(row.key for row in ROWS)

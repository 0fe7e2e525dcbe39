"""MemoryAnalysis -> rich renderables and the --json dict. No computation beyond differences."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from llmcalc.config.experts import is_latent
from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import local_layer_count
from llmcalc.memory.analysis import MemoryAnalysis
from llmcalc.memory.formula import TrainingMemory
from llmcalc.units import format_bytes


def _b(value: int | None) -> str:
    return "n/a" if value is None else format_bytes(value)


def _error(value: int, reference: int) -> str:
    return f"{100 * (value - reference) / reference:+.2f}%" if reference else "n/a"


def _table(title: str, *columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=index > 0)
    return table


def kv_rule(cfg: ModelConfig) -> str:
    """The closed form of the cache, with the window's terms where the model has local layers."""
    local = local_layer_count(cfg)
    # latent attention: the latent and the shared RoPE key per position and layer
    per = "(r_kv+d_rope)" if is_latent(cfg) else "2·h_kv·d_h"
    if not local:
        return f"{per}·L·T·B·bytes" if is_latent(cfg) else "2·L·h_kv·d_h·T·B·bytes"
    window = cfg.sliding_window
    if local == cfg.n_layers:
        return f"{per}·L·min(T, W−1)·B·bytes, W {window:,} (sliding window, all layers)"
    return (
        f"{per}·B·bytes·({cfg.n_layers - local}·T + {local}·min(T, W−1)), W {window:,} "
        f"({local} of {cfg.n_layers} layers local)"
    )


# latent attention's two rows: what is cached, and the keys and values decompressed from it
_LATENT_ROWS = {"latent": "MLA latent ◀", "decompressed": "MLA decompressed k, v"}


def kv_table(result: MemoryAnalysis) -> Table:
    table = _table(
        f"KV cache ({result.kv_dtype}) = {kv_rule(result.config)}, T {result.seq:,}, "
        f"B {result.batch}",
        "attention",
        "kv heads",
        "k+v params",
        "/token",
        "/sequence",
        "total",
    )
    for kind, variant in result.kv_variants.items():
        if variant is None:
            table.add_row(kind.upper(), "n/a", "", "", "", "")
            continue
        chosen = " ◀" if variant.n_kv_heads == result.config.n_kv_heads else ""
        table.add_row(
            _LATENT_ROWS[kind] if kind in _LATENT_ROWS else kind.upper() + chosen,
            str(variant.n_kv_heads),
            f"{variant.kv_params:,}",
            _b(variant.bytes_per_token),
            _b(variant.bytes_per_sequence),
            _b(variant.total),
        )
    return table


def training_table(result: MemoryAnalysis) -> Table:
    training, traced = result.training, result.traced
    columns = ["", "predicted"] + (["traced", "error"] if traced is not None else [])
    table = _table(
        f"Training step ({result.precision}, {result.optimizer}, checkpointing "
        f"{result.checkpointing}, {result.attention} attention)",
        *columns,
    )
    sizes = [
        ("weights", training.weights, traced and traced.phases["forward"].categories["weights"]),
        ("gradients", training.gradients, traced and traced.gradients),
        ("optimizer state", training.optimizer, traced and traced.optimizer_state),
        ("activations kept for backward", training.activations, traced and traced.saved),
    ]
    for label, predicted, observed in sizes:
        row = [label, _b(predicted)]
        if traced is not None:
            row += [_b(observed), _error(predicted, observed)]
        table.add_row(*row)
    for name, phase in training.phases.items():
        marker = "◀ " if name == training.peak_phase else ""
        row = [f"{marker}{name} peak ({phase.at})", _b(phase.total)]
        if traced is not None:
            observed = traced.phases[name].total
            row += [_b(observed), _error(phase.total, observed)]
        table.add_row(*row)
    return table


_FROM_CONFIG = ", from the config"  # its dtype field (config.json: torch_dtype or dtype)


def inference_table(result: MemoryAnalysis) -> Table:
    inference, traced = result.inference, result.traced_inference
    columns = ["", "predicted"] + (["traced", "error"] if traced is not None else [])
    table = _table(
        f"Inference ({result.dtype}{_FROM_CONFIG if result.dtype_source == 'config' else ''}): "
        f"prefill of {result.batch} × {result.seq:,} tokens",
        *columns,
    )
    observed = traced.categories if traced is not None else {}
    rows = [
        ("weights", inference.weights, observed.get("weights")),
        ("KV cache", inference.kv_cache, observed.get("kv_cache")),
        (f"prefill transients ({inference.at})", inference.activations, observed.get("other")),
        ("peak", inference.peak, traced.peak if traced is not None else None),
    ]
    for label, predicted, seen in rows:
        row = [label, _b(predicted)]
        if traced is not None:
            row += [_b(seen), _error(predicted, seen)]
        table.add_row(*row)
    return table


def measured_table(result: MemoryAnalysis) -> Table:
    measured = result.measured
    predicted = result.training.peak
    table = _table(f"Measured on {measured.device}", "", "bytes", "vs predicted", "vs traced")
    traced = result.traced.peak if result.traced else None

    def versus(value: int) -> list[str]:
        return [_error(predicted, value), _error(traced, value) if traced else "n/a"]

    how = "max_memory_allocated" if measured.reserved is not None else "tracked real tensors"
    table.add_row(f"peak tensor bytes ({how})", _b(measured.peak), *versus(measured.peak))
    if measured.reserved is not None:
        table.add_row("peak reserved (max_memory_reserved)", _b(measured.reserved), "", "")
        table.add_row("reserved − peak (fragmentation)", _b(measured.fragmentation), "", "")
    if measured.rss is not None:
        table.add_row("process peak RSS (with Python and torch)", _b(measured.rss), "", "")
    return table


def summary_lines(result: MemoryAnalysis) -> Text:
    cfg, training = result.config, result.training
    if is_latent(cfg):
        heads = (
            f"MLA, a latent of {cfg.kv_lora_rank} + {cfg.qk_rope_head_dim} cached for "
            f"{cfg.n_heads} heads"
        )
    else:
        heads = f"{cfg.attention_kind}, {cfg.n_kv_heads} KV heads of {cfg.n_heads}"
    lines = [
        f"{cfg.name}: {heads}; batch {result.batch} × seq {result.seq:,}",
        f"Training peak {format_bytes(training.peak)} in the {training.peak_phase} phase "
        f"({training.phases[training.peak_phase].at}); inference peak "
        f"{format_bytes(result.inference.peak)}.",
    ]
    if result.fit is not None:
        lines.append(fit_line(result))
    if result.measured is not None and result.measured.reserved is not None:
        lines.append("CUDA figures leave out the CUDA context (held by the driver, not PyTorch).")
    lines.append(
        "Bytes are tensor bytes in binary units; --json has them exact. Predicted = formula; "
        "traced = the real step on fake tensors (--trace); measured = a real run (--measure)."
    )
    return Text("\n".join(lines))


def _exact(value: int) -> str:
    return f"{format_bytes(value)} ({value:,} bytes)"


def fit_line(result: MemoryAnalysis) -> str:
    """What fits in --gpu-mem; where nothing does, the bytes needed at the smallest size."""
    fit, batch, seq = result.fit, result.batch, result.seq
    has = f"has {_exact(fit.memory)}"

    def refused(b: int, t: int, need: int) -> str:
        return f"does not fit at batch {b} × seq {t:,}: needs {_exact(need)}, {has}"

    if fit.max_batch_inference:
        by_batch = f"fits batch ≤ {fit.max_batch_inference:,} at seq {seq:,}"
    else:
        by_batch = refused(1, seq, fit.inference_peak_batch_1)
    if not fit.max_seq_inference:
        by_seq = refused(batch, 1, fit.inference_peak_seq_1)
    else:
        by_seq = f"fits seq ≤ {fit.max_seq_inference:,} at batch {batch}"
        if fit.seq_limit == "max_seq_len":
            by_seq += (
                ", the limit being max_seq_len (memory alone would allow "
                f"{fit.max_seq_inference_memory:,})"
            )
    if fit.max_batch_inference and fit.max_seq_inference:
        inference = f"inference {by_batch} and {by_seq.removeprefix('fits ')}"
    else:
        inference = f"inference {by_batch}; inference {by_seq}"
    if fit.max_batch_training:
        training = f"training fits batch ≤ {fit.max_batch_training:,} at seq {seq:,}"
    else:
        training = "training " + refused(1, seq, fit.training_peak_batch_1)
    return f"In {format_bytes(fit.memory)}: {inference}; {training}."


def memory_renderables(result: MemoryAnalysis) -> list[RenderableType]:
    items: list[RenderableType] = [kv_table(result), training_table(result)]
    items.append(inference_table(result))
    if result.measured is not None:
        items.append(measured_table(result))
    items.append(summary_lines(result))
    return items


def _training_json(training: TrainingMemory) -> dict[str, Any]:
    return {
        "weights": training.weights,
        "gradients": training.gradients,
        "optimizer": training.optimizer,
        "activations": training.activations,
        "logits": training.logits,
        "peak": training.peak,
        "peak_phase": training.peak_phase,
        "phases": {
            name: {"total": phase.total, "at": phase.at, "categories": phase.categories}
            for name, phase in training.phases.items()
        },
    }


def memory_json(result: MemoryAnalysis) -> dict[str, Any]:
    inference, traced, measured, fit = (
        result.inference,
        result.traced,
        result.measured,
        result.fit,
    )
    return {
        "model": result.config.name,
        "n_kv_heads": result.config.n_kv_heads,
        "batch": result.batch,
        "seq": result.seq,
        "precision": result.precision,
        "optimizer": result.optimizer,
        "checkpointing": result.checkpointing,
        "attention": result.attention,
        "dtype": result.dtype,
        "dtype_source": result.dtype_source,
        "kv_dtype": result.kv_dtype,
        "kv_cache_bytes": result.kv_cache_bytes,
        "kv_cache": {
            kind: None
            if v is None
            else {
                "n_kv_heads": v.n_kv_heads,
                "kv_params": v.kv_params,
                "bytes_per_token": v.bytes_per_token,
                "bytes_per_sequence": v.bytes_per_sequence,
                "bytes": v.total,
            }
            for kind, v in result.kv_variants.items()
        },
        "training": _training_json(result.training),
        "inference": {
            "weights": inference.weights,
            "kv_cache": inference.kv_cache,
            "activations": inference.activations,
            "peak": inference.peak,
        },
        "fit": None if fit is None else asdict(fit),
        "traced": None
        if traced is None
        else {
            "peak": traced.peak,
            "peak_phase": traced.peak_phase,
            "weights": traced.phases["forward"].categories["weights"],
            "gradients": traced.gradients,
            "optimizer": traced.optimizer_state,
            "activations": traced.saved,
            "phases": {
                name: {"total": phase.total, "categories": phase.categories}
                for name, phase in traced.phases.items()
            },
            "inference": {
                "peak": result.traced_inference.peak,
                "categories": result.traced_inference.categories,
            },
        },
        "measured": None
        if measured is None
        else {
            "device": measured.device,
            "peak_bytes": measured.peak,
            "reserved_bytes": measured.reserved,
            "fragmentation_bytes": measured.fragmentation,
            "rss_bytes": measured.rss,
        },
    }

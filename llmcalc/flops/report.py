"""FlopsAnalysis -> rich renderables and the --json dict. No computation beyond ratios."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmcalc.flops.analysis import FlopsAnalysis
from llmcalc.flops.count import ATTENTION_CORE

LABELS = {
    "attn_q": "q projection",
    "attn_k": "k projection",
    "attn_v": "v projection",
    "attn_qkv": "qkv projection (fused)",
    "attn_scores": "attention scores QKᵀ (full T×T)",
    "attn_values": "attention · V (full T×T)",
    "attn_o": "o projection",
    "mlp": "MLP",
    "lm_head": "LM head",
    ATTENTION_CORE: "attention QKᵀ + ·V",
    "attn_q_a": "q latent (d -> r_q)",
    "attn_q_b": "q from latent (r_q -> h·(n + r))",
    "attn_kv_a": "kv latent + RoPE key (d -> r_kv + r)",
    "attn_kv_b": "k, v from latent, every key (r_kv -> h·(n + d_v))",
    "router": "router (d -> E)",
    "experts": "routed experts (k per token)",
    "shared_experts": "shared experts",
}


def _n(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _sci(value: float) -> str:
    return f"{value:.3e}"


def forward_table(result: FlopsAnalysis) -> Table:
    tokens = result.batch * result.seq
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Forward FLOPs, batch {result.batch} × seq {result.seq} (1 MAC = 2 FLOPs)",
        title_justify="left",
    )
    for name, justify in (
        ("component", "left"),
        ("per step", "right"),
        ("per token", "right"),
        ("share", "right"),
    ):
        table.add_column(name, justify=justify)
    fwd = result.forward
    for component, value in fwd.matmul.items():
        if value == 0 and component in PROJECTION_SPLIT:
            continue
        table.add_row(
            LABELS[component],
            _n(value),
            _n(value // tokens),
            f"{100 * value / fwd.matmul_total:.2f}%",
        )
    table.add_row("token / position embedding", "0", "0", "lookups")
    table.add_section()
    table.add_row("matmul total", _n(fwd.matmul_total), _n(fwd.matmul_total // tokens), "")
    table.add_row(
        "matmul total, causal-half attention",
        _n(fwd.matmul_total_causal),
        _n(fwd.matmul_total_causal // tokens),
        "",
    )
    if fwd.matmul_total_windowed is not None:
        table.add_row(
            "matmul total, windowed attention",
            _n(fwd.matmul_total_windowed),
            _n(fwd.matmul_total_windowed // tokens),
            "",
        )
    non_matmul = sum(fwd.non_matmul.values())
    detail = ", ".join(f"{k} {_sci(v)}" for k, v in fwd.non_matmul.items() if v)
    table.add_row("non-matmul (approx., see caption)", _n(non_matmul), _n(non_matmul // tokens), "")
    table.caption = (
        f"non-matmul: {detail}. Rule: 1 FLOP per element per elementary op (RMSNorm 4, LayerNorm "
        "5-6, softmax 5 per score, activation 1-2, bias and residual adds 1, RoPE 3)"
    )
    table.caption_justify = "left"
    return table


# A fused model has no separate q, k, v rows, the others no fused row: their zeros are not shown
PROJECTION_SPLIT = ("attn_q", "attn_k", "attn_v", "attn_qkv")


def counted_table(result: FlopsAnalysis) -> RenderableType:
    counted = result.counted
    if counted is None:
        return Text("Counted: skipped (--no-count); analytic figures only.\n", style="yellow")
    title = "Counted on the real model (meta device), forward matmul FLOPs"
    if counted.blocks_traced == 1 and result.config.n_layers > 1:
        title += f": one block traced, × {result.config.n_layers} layers (identical blocks)"
    elif counted.blocks_traced == 2 and result.config.n_layers > 2:
        title += ": one dense and one MoE block traced, each × its layers"
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for name in ("component", "analytic", "FlopCounterMode", "fvcore × 2", "result"):
        table.add_column(name, justify="left" if name in ("component", "result") else "right")
    mismatches = result.mismatches
    for component, value in result.analytic_merged.items():
        fv = None if counted.fvcore_forward is None else counted.fvcore_forward.get(component)
        bad = [k for k in mismatches if k.endswith(":" + component)]
        if component in PROJECTION_SPLIT and not (
            value or bad or counted.torch_forward.get(component)
        ):
            continue
        verdict = Text("MISMATCH", style="red") if bad else Text("exact", style="green")
        table.add_row(
            LABELS[component], _n(value), _n(counted.torch_forward.get(component)), _n(fv), verdict
        )
    table.add_section()
    step = result.step
    for label, key, analytic, value in (
        ("backward (2 × forward)", "backward", step.backward, counted.torch_backward),
        ("recomputed forward, every op", "recompute", step.recompute, counted.torch_recompute),
        (
            "recomputed forward, torch early stop",
            "recompute_early_stop",
            step.recompute_early_stop,
            counted.torch_recompute_early_stop,
        ),
    ):
        if value is None:
            continue
        ok = f"torch:{key}" not in mismatches
        verdict = Text("exact", style="green") if ok else Text("MISMATCH", style="red")
        table.add_row(label, _n(analytic), _n(value), "n/a (forward only)", verdict)
    if counted.fvcore_error:
        table.caption = f"fvcore unavailable: {counted.fvcore_error}"
    return table


def training_table(result: FlopsAnalysis) -> Table:
    step = result.step
    exact, causal = step.model, result.step_causal.model
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Training step FLOPs (batch {result.batch} × seq {result.seq}), conventions side by side",
        title_justify="left",
    )
    for name in ("convention", "FLOPs", "÷ exact", "÷ exact (causal)", "source"):
        table.add_column(name, justify="right" if name not in ("convention", "source") else "left")
    table.add_row(
        "llmcalc exact: forward + backward (model FLOPs)",
        _sci(exact),
        "1.000",
        f"{exact / causal:.3f}",
        "counted matmuls, full T×T",
    )
    table.add_row(
        "llmcalc exact, causal-half attention",
        _sci(causal),
        f"{causal / exact:.3f}",
        "1.000",
        "scores under the mask only",
    )
    if result.forward.matmul_total_windowed is not None:
        windowed = 3 * result.forward.matmul_total_windowed  # backward = 2 × forward
        table.add_row(
            "llmcalc exact, windowed attention",
            _sci(windowed),
            f"{windowed / exact:.3f}",
            f"{windowed / causal:.3f}",
            f"local layers score each query's last {result.config.sliding_window} keys only",
        )
    hardware, hardware_causal = step.hardware, result.step_causal.hardware
    if step.recompute:
        table.add_row(
            "+ full recomputation (hardware FLOPs)",
            _sci(hardware),
            f"{hardware / exact:.3f}",
            f"{hardware / causal:.3f}",
            "every block's forward again (Megatron-LM; torch checkpoint, early stop off): HFU",
        )
        early = step.hardware_early_stop
        table.add_row(
            "+ full recomputation, torch early stop",
            _sci(early),
            f"{early / exact:.3f}",
            f"{early / causal:.3f}",
            "torch.utils.checkpoint's default: the rerun stops once every saved tensor is back "
            "(skips a pre-norm block's MLP output projection)",
        )
    table.add_section()
    for row in result.conventions:
        source = row.citation + (f" ({row.note})" if row.note else "")
        full, half = (hardware, hardware_causal) if row.hardware else (exact, causal)
        table.add_row(
            row.name, _sci(row.flops), f"{row.flops / full:.3f}", f"{row.flops / half:.3f}", source
        )
    if step.recompute:
        table.caption = "Rows marked hardware FLOPs are divided by llmcalc's hardware FLOPs."
        table.caption_justify = "left"
    return table


def inference_panel(result: FlopsAnalysis) -> Panel:
    prefill, batch, position = result.prefill, result.batch, result.decode_position
    tokens = batch * result.seq
    shape = f"batch {batch} × {result.seq:,} tokens" if batch > 1 else f"{result.seq:,} tokens"
    decode = f"decode one token at position {position} (attends over {position + 1:,} keys: the "
    decode += "cache and itself)"
    if batch > 1:
        decode += f":\n  {_n(result.decode)} FLOPs per sequence, "
        decode += f"{_n(batch * result.decode)} for the batch of {batch}"
    else:
        decode += f": {_n(result.decode)} FLOPs"
    if result.decode_absorbed is not None:
        decode += (
            f" as trained (every cached latent decompressed again, as transformers does);\n  "
            f"{_n(result.decode_absorbed)} per sequence with kv_b absorbed into q and o (no key "
            "decompressed: DeepSeek-V2 §2.1.3, FlashMLA, vLLM, SGLang)"
        )
    lines: list[RenderableType] = [
        Text(
            f"prefill of {shape} (full T×T attention), FLOPs:\n"
            f"  {_n(prefill.all_logits)} with logits at every position (a plain forward; "
            f"{_n(prefill.all_logits // tokens)} per token)\n"
            f"  {_n(prefill.last_logits)} with the last position's logits only "
            "(logits_to_keep=1, as transformers' generate does)"
        ),
        Text(decode),
    ]
    budget = result.budget
    if budget is not None:
        lines.append(
            Text(
                f"\ntraining on {budget.tokens:,} tokens: {_sci(budget.model_flops)} model FLOPs"
                + (
                    f", {_sci(budget.hardware_flops)} hardware FLOPs"
                    if budget.hardware_flops != budget.model_flops
                    else ""
                )
            )
        )
        if budget.seconds is not None:
            days = budget.seconds / 86400
            lines.append(
                Text(
                    f"at {budget.peak_flops_per_gpu / 1e12:g} TFLOP/s peak × MFU {budget.mfu:g} × "
                    f"{budget.gpus} GPU(s): {budget.seconds:,.0f} s = {days:,.2f} days, "
                    f"{budget.gpu_hours:,.0f} GPU-hours"
                )
            )
    return Panel(Group(*lines), title="Inference and budget", title_align="left")


def flops_renderables(result: FlopsAnalysis) -> list[RenderableType]:
    return [
        forward_table(result),
        counted_table(result),
        training_table(result),
        inference_panel(result),
    ]


def flops_json(result: FlopsAnalysis) -> dict[str, Any]:
    fwd, counted, step, budget = result.forward, result.counted, result.step, result.budget
    counted_json = None
    if counted is not None:
        counted_json = {
            "torch": {
                "forward": counted.torch_forward,
                "backward": counted.torch_backward,
                "recompute": counted.torch_recompute,
                "recompute_early_stop": counted.torch_recompute_early_stop,
            },
            "fvcore": None
            if counted.fvcore_forward is None
            else {"forward": counted.fvcore_forward},
            "fvcore_error": counted.fvcore_error,
            "blocks_traced": counted.blocks_traced,
        }
    return {
        "name": result.config.name,
        "batch": result.batch,
        "seq": result.seq,
        "forward": {
            "total": fwd.total,
            "matmul": fwd.matmul_total,
            "matmul_causal": fwd.matmul_total_causal,
            "matmul_windowed": fwd.matmul_total_windowed,
            "components": fwd.matmul,
            "non_matmul": fwd.non_matmul,
        },
        "backward": step.backward,
        "step": {
            "model": step.model,
            "hardware": step.hardware,
            "hardware_torch_early_stop": step.hardware_early_stop,
            "recompute": result.recompute,
        },
        "counted": counted_json,
        "exact": None if counted is None else not result.mismatches,
        "mismatches": result.mismatches,
        "conventions": {row.name: row.flops for row in result.conventions},
        "inference": {
            "batch": result.batch,
            "prefill_seq": result.seq,
            "prefill_logits_all_positions": result.prefill.all_logits,
            "prefill_logits_last_position": result.prefill.last_logits,
            "decode_position": result.decode_position,
            "decode_per_sequence": result.decode,
            "decode_batch": result.batch * result.decode,
            **(
                {}
                if result.decode_absorbed is None
                else {"decode_per_sequence_absorbed": result.decode_absorbed}
            ),
        },
        "budget": None
        if budget is None
        else {**asdict(budget), "seconds": budget.seconds, "gpu_hours": budget.gpu_hours},
    }

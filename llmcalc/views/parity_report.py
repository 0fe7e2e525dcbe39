"""`llmcalc check --against transformers` as a rich table (one line per check, its notes below)
and JSON."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from llmcalc.views.parity import MEMORY_TOLERANCE, ParityCheck, ParityResult


def _difference(check: ParityCheck) -> str:
    if check.difference == 0:
        return "0"
    return f"{check.difference:+,} ({check.relative:+.2%})"


def _verdict(check: ParityCheck) -> str:
    if not check.passed:
        return "MISMATCH"
    if check.tolerance == 0:
        return "exact"
    return f"within {check.tolerance:.1%}"


def parity_table(result: ParityResult) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"{result.config} ({result.model_type}) against transformers "
        f"{result.transformers_version}, batch {result.batch} × seq {result.seq:,}",
        title_justify="left",
    )
    table.add_column("check")
    for name in ("llmcalc", "transformers", "difference"):
        table.add_column(name, justify="right")
    table.add_column("result")
    for check in result.checks:
        table.add_row(
            check.name,
            f"{check.llmcalc:,}",
            f"{check.transformers:,}",
            _difference(check),
            _verdict(check),
        )
    return table


def parity_notes(result: ParityResult) -> Text:
    """Below the table: how each figure was made, and the known cause of any gap."""
    text = Text()
    for check in result.checks:
        if check.note:
            text.append(f"{check.name}: {check.note}\n")
    text.append(
        "Parameters are unique tensors; FLOPs the matmuls of one forward (1 MAC = 2 FLOPs), "
        "counted on transformers' model; KV cache and training peak in tensor bytes. Exact, "
        f"except the training peak: within {MEMORY_TOLERANCE:.1%}."
    )
    return text


def parity_renderables(results: list[ParityResult]) -> list[Any]:
    return [item for result in results for item in (parity_table(result), parity_notes(result))]


def parity_summary(results: list[ParityResult]) -> str:
    checks = [check for result in results for check in result.checks]
    failed = [check for check in checks if not check.passed]
    summary = f"{len(checks) - len(failed)} of {len(checks)} checks pass"
    return summary if not failed else f"{summary}; {len(failed)} MISMATCH"


def parity_json(results: list[ParityResult]) -> dict[str, Any]:
    return {
        "against": "transformers",
        "transformers_version": results[0].transformers_version if results else None,
        "passed": all(result.passed for result in results),
        "configs": [
            {
                "config": result.config,
                "model_type": result.model_type,
                "batch": result.batch,
                "seq": result.seq,
                "passed": result.passed,
                "checks": [
                    {
                        "name": check.name,
                        "unit": check.unit,
                        "llmcalc": check.llmcalc,
                        "transformers": check.transformers,
                        "difference": check.difference,
                        "relative": check.relative,
                        "tolerance": check.tolerance,
                        "passed": check.passed,
                        "note": check.note,
                    }
                    for check in result.checks
                ],
            }
            for result in results
        ],
    }

"""`llmcalc check --against transformers` as a rich table (one line per check) and JSON."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from llmcalc.views.parity import ParityCheck, ParityResult


def _difference(check: ParityCheck) -> str:
    if check.difference == 0:
        return "0"
    return f"{check.difference:+,} ({check.relative:+.3%})"


def _verdict(check: ParityCheck) -> str:
    if not check.passed:
        return "MISMATCH"
    if check.tolerance == 0:
        return "exact"
    return f"within {check.tolerance:.1%}"


def parity_table(result: ParityResult) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"llmcalc against transformers {result.transformers_version}: {result.config} "
        f"({result.model_type}), batch {result.batch} × seq {result.seq:,}",
        title_justify="left",
    )
    for name, justify in (
        ("check", "left"),
        ("llmcalc", "right"),
        ("transformers", "right"),
        ("difference", "right"),
        ("result", "left"),
        ("note", "left"),
    ):
        table.add_column(name, justify=justify)
    for check in result.checks:
        table.add_row(
            check.name,
            f"{check.llmcalc:,}",
            f"{check.transformers:,}",
            _difference(check),
            _verdict(check),
            check.note,
        )
    return table


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

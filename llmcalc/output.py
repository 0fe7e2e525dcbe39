"""The one output layer: every command's result as a rich table, JSON, Markdown or CSV.

Commands hand over a JSON-ready dict and a list of rich renderables.
- table: the renderables, laid out so that no value is ever cut (layout.py): at the terminal's
  width (or COLUMNS), and when stdout is not a terminal, at the width the content needs.
- json: the dict, exact integers.
- markdown: the tables as Markdown tables, everything else (panels, charts) in code fences.
- csv: one tidy table made from the dict (tidy.py): table,row,column,value,text, raw numbers.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from llmcalc.layout import fit, natural_width
from llmcalc.tidy import to_csv

FORMATS = ("table", "json", "markdown", "csv")
MIN_WIDTH = 40  # narrower terminals get 40 columns and wrap them themselves


def _console(width: int | None = None) -> Console:
    # NO_COLOR (no-color.org): no escape codes at all, not even bold; plain on non-terminals too
    plain = {"color_system": None} if os.environ.get("NO_COLOR") else {}
    return Console(highlight=False, markup=False, width=width, **plain)


def _cells(table: Table) -> tuple[list[str], list[list[str]]]:
    headers = [str(column.header) for column in table.columns]
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    return headers, [list(row) for row in zip(*columns, strict=True)]


def _plain(item: Any) -> str:
    """A renderable as plain text at the width it needs (for a Markdown code fence)."""
    console = _console(natural_width([item]))
    with console.capture() as capture:
        console.print(item)
    return "\n".join(line.rstrip() for line in capture.get().splitlines())


def to_markdown(renderables: list[Any]) -> str:
    parts = []
    for item in renderables:
        if isinstance(item, Table):
            headers, rows = _cells(item)
            lines = [f"**{item.title}**", ""] if item.title else []
            lines.append("| " + " | ".join(h or " " for h in headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += [
                "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
            ]
            parts.append("\n".join(lines))
        else:  # panels, charts, notes: kept as they look, inside a fence
            parts.append(f"```text\n{_plain(item)}\n```")
    return "\n\n".join(parts) + "\n"


def emit(fmt: str, data: dict[str, Any], renderables: list[Any]) -> str | None:
    """Text for stdout (json, markdown, csv), or None after printing the rich tables."""
    if fmt == "json":
        return json.dumps(data, indent=2, allow_nan=False)
    if fmt == "markdown":
        return to_markdown(renderables).rstrip("\n")
    if fmt == "csv":
        return to_csv(data).rstrip("\n")
    print_table(renderables)
    return None


def print_table(renderables: list[Any]) -> None:
    """The table format: at the terminal's width (COLUMNS wins when set); piped or redirected, at
    the width the content needs. Tables too wide for the width are laid out to fit, never cut."""
    width = None
    if not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        width = natural_width(renderables)
    console = _console(width)
    if console.width < MIN_WIDTH:  # COLUMNS=0 or 10: too narrow to keep a number whole
        console = _console(MIN_WIDTH)
    for item in renderables:
        console.print(fit(item, console, console.width), crop=False)  # stacked lines stay whole

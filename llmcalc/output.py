"""The one output layer: every command's result as a rich table, JSON, Markdown or CSV.

Commands hand over a JSON-ready dict and a list of rich renderables; Markdown and CSV are made
from the same rich Tables (title, headers, cells), so the four formats never disagree."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "markdown", "csv")


def _rows(table: Table) -> tuple[list[str], list[list[str]]]:
    headers = [str(column.header) for column in table.columns]
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    return headers, [list(row) for row in zip(*columns, strict=True)]


def to_markdown(renderables: list[Any]) -> str:
    parts = []
    for item in renderables:
        if isinstance(item, Table):
            headers, rows = _rows(item)
            lines = [f"**{item.title}**", ""] if item.title else []
            lines.append("| " + " | ".join(h or " " for h in headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += [
                "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
            ]
            parts.append("\n".join(lines))
        elif isinstance(item, (Text, str)):
            parts.append(str(item))
    return "\n\n".join(parts) + "\n"


def to_csv(renderables: list[Any]) -> str:
    """One block per table: a `# title` line, the header row, the rows; blank line between."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    first = True
    for item in renderables:
        if not isinstance(item, Table):
            continue
        if not first:
            buffer.write("\n")
        first = False
        headers, rows = _rows(item)
        if item.title:
            buffer.write(f"# {item.title}\n")
        writer.writerow(headers)
        writer.writerows(rows)
    return buffer.getvalue()


def emit(fmt: str, data: dict[str, Any], renderables: list[Any]) -> str | None:
    """Text for stdout (json, markdown, csv), or None after printing the rich tables."""
    if fmt == "json":
        return json.dumps(data, indent=2, allow_nan=False)
    if fmt == "markdown":
        return to_markdown(renderables).rstrip("\n")
    if fmt == "csv":
        return to_csv(renderables).rstrip("\n")
    # NO_COLOR (no-color.org): no escape codes at all, not even bold; plain on non-terminals too
    plain = {"color_system": None} if os.environ.get("NO_COLOR") else {}
    console = Console(highlight=False, markup=False, **plain)
    for item in renderables:
        console.print(item)
    return None

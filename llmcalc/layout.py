"""Tables that never cut a value. rich shrinks a table that is wider than the console by cutting
cells with an ellipsis; here each table is laid out before rich sees it:

1. its natural width fits: unchanged;
2. every column at its minimum fits (a no_wrap column: its longest cell; any other: its longest
   word, so a number or a name is never split): columns get fixed widths between their minimum and
   their natural width, and text wraps at spaces;
3. otherwise the table is stacked: each row a block of `header: value` lines under its first cell.

Panels and groups are laid out by their content, at the width inside them.
"""

from __future__ import annotations

import copy
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.measure import Measurement, measure_renderables
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

_UNBOUNDED = 100_000  # a console this wide never wraps: natural widths


def natural_width(renderables: list[Any]) -> int:
    """The width the renderables need to print without wrapping or cutting anything."""
    console = Console(width=_UNBOUNDED)
    widest = measure_renderables(console, console.options, renderables).maximum
    return max(1, min(widest, _UNBOUNDED))


def fit(item: Any, console: Console, width: int) -> Any:
    """The renderable laid out for `width` columns without cutting a value."""
    if isinstance(item, Table):
        return _fit_table(item, console, width)
    if isinstance(item, Panel):
        _, right, _, left = Padding.unpack(item.padding)
        panel = copy.copy(item)
        panel.renderable = fit(item.renderable, console, width - left - right - 2)
        return panel
    if isinstance(item, Group):
        return Group(*(fit(child, console, width) for child in item.renderables))
    return item


def _text(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _lines(cell: Any) -> list[str]:
    return _text(cell).splitlines() or [""]


def _column_range(column: Any) -> tuple[int, int]:
    """(minimum, natural) width of a column's content, header included."""
    cells = [column.header, *column.cells]
    natural = max(cell_len(line) for cell in cells for line in _lines(cell))
    if column.no_wrap:
        return natural, natural
    words = [word for cell in cells for line in _lines(cell) for word in line.split()]
    return max((cell_len(word) for word in words), default=0), natural


def _fit_table(table: Table, console: Console, width: int) -> Any:
    options = console.options.update_width(_UNBOUNDED)
    natural_table = Measurement.get(console, options, table).maximum
    if natural_table <= width:
        return table
    ranges = [_column_range(column) for column in table.columns]
    chrome = natural_table - sum(natural for _, natural in ranges)  # padding and borders
    room = width - chrome
    minimum = sum(low for low, _ in ranges)
    if minimum > room:
        return stacked(table)
    widths = _share(ranges, room)
    laid_out = copy.deepcopy(table)
    for column, column_width in zip(laid_out.columns, widths, strict=True):
        column.width, column.ratio, column.overflow = column_width, None, "fold"
    return laid_out


def _share(ranges: list[tuple[int, int]], room: int) -> list[int]:
    """Column widths from their minimums; the spare room goes to the columns that want least
    first, so short cells (a shape, a number with its unit) stay on one line and a long note
    wraps."""
    widths = [low for low, _ in ranges]
    spare = room - sum(widths)
    for index in sorted(range(len(ranges)), key=lambda i: ranges[i][1] - ranges[i][0]):
        grant = min(ranges[index][1] - widths[index], spare)
        widths[index] += grant
        spare -= grant
    return widths


def stacked(table: Table) -> Group:
    """Every row as a block: its first cell, then `header: value` for the other cells."""
    lines: list[Text] = []  # each line whole: a terminal narrower than one wraps it, never cuts
    if table.title:
        lines += [Text(_text(table.title), style="bold"), Text("")]
    headers = [_text(column.header) for column in table.columns]
    rows = zip(*(column.cells for column in table.columns), strict=True)
    for index, row in enumerate(rows):
        if index and index in _section_starts(table):
            lines.append(Text(""))
        first, *rest = row
        lines.append(_whole(f"  {_text(first) or headers[0]}"))
        for header, cell in zip(headers[1:], rest, strict=True):
            value = " ".join(_text(cell).split())
            if value:
                lines.append(_whole(f"    {header}: {value}" if header else f"    {value}"))
    return Group(*lines, Text(""))


def _whole(line: str) -> Text:
    return Text(line, no_wrap=True, overflow="ignore")


def _section_starts(table: Table) -> set[int]:
    """Row indices that follow a section line (table.add_section)."""
    return {index + 1 for index, row in enumerate(table.rows) if row.end_section}

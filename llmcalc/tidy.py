"""CSV as one tidy table made from a command's JSON: every number raw and exact, one per line.

Each scalar of the JSON becomes a line `table,row,column,value,text`: `table` is its top-level key
(`summary` for top-level scalars), `column` its own key, and `row` the keys between (a list item
is named by its `name` field, else by its index). Numbers go in `value` (integers as integers, no
separators, no units); text, true/false and lists of plain values (a tensor's shape, as JSON) go in
`text`. It loads with the csv module and with pandas, e.g. `df.pivot(index="row",
columns="column", values="value")` for one table.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

HEADER = ("table", "row", "column", "value", "text")


def tidy_rows(data: dict[str, Any]) -> list[tuple[str, str, str, int | float | str, str]]:
    rows: list[tuple[str, str, str, int | float | str, str]] = []

    def leaf(path: list[str], value: Any) -> None:
        table, *middle, column = path if len(path) > 1 else ["summary", *path]
        if isinstance(value, bool) or value is None:
            number, text = "", "" if value is None else str(value).lower()
        elif isinstance(value, int | float):
            number, text = value, ""
        elif isinstance(value, list):
            number, text = "", json.dumps(value)
        else:
            number, text = "", str(value)
        rows.append((table, ".".join(middle), column, number, text))

    def walk(path: list[str], value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if not (path and key == "name" and _named(value)):  # the name is the row
                    walk([*path, str(key)], child)
        elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
            for index, child in enumerate(value):
                walk([*path, child["name"] if _named(child) else str(index)], child)
        else:
            leaf(path, value)

    walk([], data)
    return rows


def _named(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("name"), str)


def to_csv(data: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for table, row, column, value, text in tidy_rows(data):
        writer.writerow(
            (table, row, column, repr(value) if isinstance(value, float) else value, text)
        )
    return buffer.getvalue()

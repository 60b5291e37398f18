"""Tables and durations as the commands print them (rich tables of plain text)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    # Text, not str: key names such as "out/[x]" must not be read as rich markup.
    table = Table(title=Text(title), title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def age(seconds: float | None) -> str:
    """A duration as a person reads it: ``4.2 s``, ``5 min 3 s``, ``2 h 37 min``, ``3 d 4 h``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    for unit_s, unit, sub_s, sub in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "min"),
        (60, "min", 1, "s"),
    ):
        if whole >= unit_s:
            return f"{whole // unit_s} {unit} {whole % unit_s // sub_s} {sub}"
    raise AssertionError("unreachable")

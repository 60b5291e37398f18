"""The ``join groups`` table of ``status``: per join rule its open groups, the oldest
few with their members seen of expected, the next deadline and the join counters."""

from __future__ import annotations

from rich.table import Table

from ..ops.join_status import JoinStatus, OpenGroup
from .tables import age, table


def joins_table(joins: list[JoinStatus]) -> Table:
    """Per join rule, its open groups: the oldest few (members seen of expected), the
    next deadline, the join counters."""
    rows = []
    for j in joins:
        c = j.counters
        counted = f"{c['completed']}/{c['expired']}/{c['dropped']}/{c['late']}"
        due = deadline(j.next_deadline_in_s)
        first = [j.rule, str(j.open), due, counted]
        groups: list[OpenGroup | None] = [*j.oldest] or [None]
        for g in groups:
            shown = ["-", "-", "-"] if g is None else [g.name, age(g.age_s), _of(g.seen, g.expect)]
            rows.append([*first[:2], *shown, *first[2:]] if first else ["", "", *shown, "", ""])
            first = []
    columns = ["join rule", "open", "oldest groups", "age", "members", "next deadline"]
    return table("join groups", [*columns, "completed/expired/dropped/late"], rows)


def deadline(in_s: float | None) -> str:
    """When a deadline falls: ``-`` (none), ``9 min 48 s``, ``overdue 2.0 s``."""
    if in_s is None:
        return "-"
    return f"overdue {age(-in_s)}" if in_s < 0 else age(in_s)


def _of(seen: int, expect: int | None) -> str:
    return f"{seen} of {'?' if expect is None else expect}"

"""Join groups as the commands print them: the ``join groups`` table of ``status`` (per
join rule its open groups, the oldest few with their members seen of expected, the next
deadline and the join counters) and the lines of ``joins show``."""

from __future__ import annotations

from rich.table import Table

from ..ops.join_status import JoinStatus, OpenGroup
from ..store.join_ops import GroupState
from .common import utc
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
    return table("join groups", [*columns, "done/expired/dropped/late"], rows)


def deadline(in_s: float | None) -> str:
    """When a deadline falls: ``-`` (none), ``in 9 min 48 s``, ``overdue 2.0 s``."""
    if in_s is None:
        return "-"
    return f"overdue {age(-in_s)}" if in_s < 0 else f"in {age(in_s)}"


def _of(seen: int, expect: int | None) -> str:
    return f"{seen} of {'?' if expect is None else expect}"


def describe(g: GroupState, now_s: int, watcher: str) -> list[str]:
    """``show``'s lines for group ``g`` (``now_s``: the Redis clock)."""
    lines = [f"group {g.name!r} ({g.key}): {g.state}"]
    if g.state != "open":
        at = "" if g.closed_ms is None else f" at {utc(g.closed_ms / 1000)} UTC"
        kept = "" if g.ttl_ms is None else f"; tombstone kept {age(g.ttl_ms / 1000)} more"
        return [f"group {g.name!r} ({g.key}): {g.state}{at}{kept}"]
    rule = f"{g.rule!r} (watcher {watcher!r})" if g.rule else "none yet (a fan-out, no member)"
    lines.append(f"  join rule     {rule}")
    if g.first_ms is not None:
        ago = age(now_s - g.first_ms / 1000)
        lines.append(f"  first member  {utc(g.first_ms / 1000)} UTC, {ago} ago")
    due = "none"
    if g.due_ms is not None:
        due = f"{utc(g.due_ms / 1000)} UTC, {deadline(g.due_ms / 1000 - now_s)}"
    lines.append(f"  deadline      {due}")
    expect = "not known yet" if g.expect is None else str(g.expect)
    lines.append(f"  members       {g.progress} of {expect} counted; {g.seen} seen")
    more = " (more not read)" if g.truncated else ""
    lines.append(f"  seen          {', '.join(g.members) or '-'}{more}")
    if g.listed:
        lines.append(f"  expected      {', '.join(g.expected) or '-'}{more}")
        lines.append(f"  missing       {', '.join(g.missing) or '-'}{more}")
    lines += [f"  odd field     {p}" for p in g.problems]
    return lines

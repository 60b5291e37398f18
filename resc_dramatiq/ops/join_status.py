"""What ``status`` and the dashboard show of a watcher's join rules: open groups per rule
(how many, the oldest few with their members seen of expected), the next deadline, and
the rule's join counters.

Reads only, and bounded: the open groups per rule are counted by the ``open/count`` hash;
the oldest groups and the next deadlines come from the first :data:`INDEX_SCAN` entries
of the ``open`` and ``due`` sorted sets (one pipelined ``HMGET`` per entry), so a rule
whose groups are all younger than those is shown with its count and without its oldest.
The keyspace is anyone's: an index of another type, a group key that is no hash or lies
outside the join keys, a field that is no number, each fails only its own row and is
named in ``odd_keys``. Times come from the Redis clock (``now_s``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..rules.model import WatcherRules
from ..store.joins import JoinKeys
from ..store.keyspace import text
from .odd_keys import OddKey, Reads, as_int, noted

#: Entries of the ``open`` and ``due`` indexes read (lowest scores first).
INDEX_SCAN = 500
#: Oldest open groups shown per join rule.
OLDEST = 5
#: The join counters of a rule (``<rule>|<counter>`` in its watcher's stats hash).
JOIN_COUNTERS = ("completed", "late", "expired", "dropped")


@dataclass(frozen=True, slots=True)
class OpenGroup:
    """One open group as the index and its hash tell it."""

    name: str
    age_s: float  # since its first member (Redis clock)
    seen: int  # members that count towards the expectation
    expect: int | None  # None: not known yet (a fan-out not recorded)
    due_in_s: float | None  # None: no deadline; negative: overdue


@dataclass(frozen=True, slots=True)
class JoinStatus:
    """One join rule: its open groups, the oldest of them, its next deadline."""

    rule: str
    open: int
    oldest: list[OpenGroup] = field(default_factory=list)
    next_deadline_in_s: float | None = None  # among the first INDEX_SCAN deadlines
    counters: dict[str, int] = field(default_factory=dict)


def join_status(
    rules: WatcherRules,
    reads: Reads,
    stats: Mapping[str, int],
    now_s: float,
    *,
    oldest: int = OLDEST,
) -> list[JoinStatus]:
    """The join rules of ``rules`` (not those that fail groups), in config order, each
    with its ``oldest`` open groups at most; odd keys are added to ``reads.odd``."""
    names = list(dict.fromkeys(r.name for r in rules.rules if r.join and not r.join.fail))
    if not names:
        return []
    keys = JoinKeys.of(rules.spec.input_queue)
    counts = reads.counters(keys.counts)
    shown_of: dict[str, list[OpenGroup]] = {n: [] for n in names}
    for rule, group in _groups(reads, keys, reads.scored(keys.open, INDEX_SCAN - 1), now_s):
        shown = shown_of.get(rule)
        if shown is not None and len(shown) < oldest:
            shown.append(group)
    nearest: dict[str, float] = {}
    for rule, group in _groups(reads, keys, reads.scored(keys.due, INDEX_SCAN - 1), now_s):
        if group.due_in_s is not None and rule not in nearest:
            nearest[rule] = group.due_in_s
    return [
        JoinStatus(
            rule=n,
            open=max(counts.get(n, 0), 0),
            oldest=shown_of[n],
            next_deadline_in_s=nearest.get(n),
            counters={c: stats.get(f"{n}|{c}", 0) for c in JOIN_COUNTERS},
        )
        for n in names
    ]


#: The fields of a group's hash the index's rows need.
FIELDS = ("state", "rule", "first", "due", "seen", "expect", "listed", "matched")


def _groups(
    reads: Reads, keys: JoinKeys, entries: Iterable[tuple[str, float]], now_s: float
) -> list[tuple[str, OpenGroup]]:
    """The open groups of index ``entries`` (group key, score), with their join rule;
    entries whose group is closed or gone (a stale entry) are left out."""
    prefix = keys.group("")
    found = [key for key, _ in entries]
    inside = [key for key in found if key.startswith(prefix)]
    for key in found:
        if not key.startswith(prefix):
            reads.odd.append(noted(OddKey(key, f"in the join index, not a key under {prefix}")))
    pipe = reads.client.pipeline(transaction=False)
    for key in inside:
        pipe.hmget(key, list(FIELDS))
    replies: list[Any] = pipe.execute(raise_on_error=False) if inside else []
    groups = []
    for key, reply in zip(inside, replies, strict=True):
        if isinstance(reply, Exception):  # WRONGTYPE: someone wrote another type there
            reads.odd.append(noted(OddKey(key, f"in the join index, {_type_of(reads, key)}")))
            continue
        f = {n: (None if v is None else text(v)) for n, v in zip(FIELDS, reply, strict=True)}
        if f["state"] != "open" or not f["rule"]:
            continue
        group = _open_group(reads, key, prefix, f, now_s)
        if group is not None:
            groups.append((f["rule"], group))
    return groups


def _open_group(
    reads: Reads, key: str, prefix: str, f: dict[str, str | None], now_s: float
) -> OpenGroup | None:
    numbers: dict[str, int | None] = {}
    for name in ("first", "due", "seen", "expect", "matched"):
        raw = f[name]
        numbers[name] = None if raw is None else as_int(raw)
        if raw is not None and numbers[name] is None:
            reads.odd.append(noted(OddKey(key, f"field {name!r} is no integer: {raw[:40]!r}")))
            return None
    first, due = numbers["first"], numbers["due"]
    progress = numbers["matched"] if f["listed"] is not None else numbers["seen"]
    return OpenGroup(
        name=key.removeprefix(prefix),
        age_s=0.0 if first is None else round(max(now_s - first / 1000, 0.0), 3),
        seen=progress or 0,
        expect=numbers["expect"],
        due_in_s=None if due is None else round(due / 1000 - now_s, 3),
    )


def _type_of(reads: Reads, key: str) -> str:
    return f"holds a {text(reads.client.type(key))}, not a hash"

"""An operator's hand on one join group: read it, complete it now, or drop it.

:func:`read_group` reads a group's hash in bounded steps (its scalar fields at once, its
members with ``HSCAN``, at most :data:`MAX_FIELDS` fields). :func:`close_group` completes
or drops an open group with ``join_close.lua``, one atomic step that checks the group is
still the open group that was read (same join rule, same first member's time): a group
completed meanwhile by its last member, expired, failed or dropped by another operator is
left alone, and nothing is half-done. A completed group fires its join's make, planned
here from its first member's variables plus ``join.group`` and ``join.size`` (as
:class:`~.joins.Deadlines` plans ``expired``); a dropped one fires nothing. Both leave a
tombstone for the group's ``ttl_s`` (``done`` or ``dropped``), so its late members do
nothing. See docs/joins.md, "Operations".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis

from ..errors import RescError
from ..rules.batch import PlannedTask
from ..rules.plan import Planner
from .contract import Status
from .joins import JoinKeys, closing_header
from .keys import DramatiqKeys
from .keyspace import text
from .scripts import Scripts, refusal, wrong_type

#: Most fields of a group's hash :func:`read_group` reads (its members, expected and
#: seen, two fields each at most): a group may expect 100,000 members.
MAX_FIELDS = 10_000

#: The group's fields read at once (the others are ``m:<member>`` and ``e:<member>``).
SCALARS = (
    "state", "rule", "first", "due", "event", "ttl", "seen", "expect", "listed", "matched", "at"
)  # fmt: skip

Action = Literal["complete", "drop"]


class GroupNotOpen(RescError):
    """Raised when a group an operator acts on is not open (closed, gone, or reopened)."""


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group's hash as read: ``state`` is ``open``, a tombstone's state (``done``,
    ``failed``, ``expired``, ``dropped``), or ``""`` when there is no such group.
    Numbers that are not are None, and named in ``problems``."""

    name: str
    key: str
    state: str
    rule: str = ""
    first_ms: int | None = None
    due_ms: int | None = None
    expect: int | None = None  # None: not known yet (a fan-out not recorded)
    listed: bool = False  # the expectation is the ``expected`` members
    seen: int = 0
    matched: int = 0  # listed members seen
    closed_ms: int | None = None  # a tombstone's time
    ttl_ms: int | None = None  # the key's time to live (None: none)
    event: bytes = b""  # the first member's (its variables, matched again)
    raw_first: str = ""  # ``first`` as stored: what close_group checks
    members: tuple[str, ...] = ()  # seen (the first MAX_FIELDS fields)
    expected: tuple[str, ...] = ()  # listed (the first MAX_FIELDS fields)
    truncated: bool = False  # more fields than MAX_FIELDS: members, expected partial
    problems: tuple[str, ...] = ()

    @property
    def progress(self) -> int:
        """The members that count towards the expectation."""
        return self.matched if self.listed else self.seen

    @property
    def missing(self) -> tuple[str, ...]:
        """The listed members not seen yet (of those read)."""
        seen = set(self.members)
        return tuple(m for m in self.expected if m not in seen)


def read_group(client: redis.Redis, keys: JoinKeys, name: str) -> GroupState:
    """Group ``name`` as its hash tells it; raise :class:`~..errors.WrongType` when its
    key holds no hash."""
    key = keys.group(name)
    held = text(client.type(key))
    if held not in ("hash", "none"):
        raise wrong_type((key, held, "hash"), "the group was not read")
    values = cast(list[Any], client.hmget(key, list(SCALARS)))
    f = {n: (None if v is None else text(v)) for n, v in zip(SCALARS, values, strict=True)}
    if f["state"] == "fanout":  # a fan-out's group no member joined yet: open
        f["state"] = "open"
    problems: list[str] = []

    def number(name: str) -> int | None:
        raw = f[name]
        if raw is None:
            return None
        digits = raw.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
            problems.append(f"field {name!r} is no integer: {raw[:40]!r}")
            return None
        return int(raw)

    seen_members: list[str] = []
    expected: list[str] = []
    truncated = False
    if f["state"] == "open":
        seen_members, expected, truncated = _members(client, key)
    pttl = int(client.pttl(key))
    return GroupState(
        name=name,
        key=key,
        state=f["state"] or "",
        rule=f["rule"] or "",
        first_ms=number("first"),
        due_ms=number("due"),
        expect=number("expect"),
        listed=f["listed"] is not None,
        seen=number("seen") or 0,
        matched=number("matched") or 0,
        closed_ms=number("at"),
        ttl_ms=pttl if pttl >= 0 else None,
        event=(values[SCALARS.index("event")] or b""),
        raw_first=f["first"] or "",
        members=tuple(seen_members),
        expected=tuple(expected),
        truncated=truncated,
        problems=tuple(problems),
    )


def _members(client: redis.Redis, key: str) -> tuple[list[str], list[str], bool]:
    """The ``m:`` and ``e:`` fields of ``key``, at most :data:`MAX_FIELDS` fields read."""
    seen: list[str] = []
    expected: list[str] = []
    cursor, read = 0, 0
    while True:
        cursor, page = cast(tuple[int, dict[bytes, bytes]], client.hscan(key, cursor, count=1000))
        for name in page:
            field_name = text(name)
            if field_name.startswith("m:"):
                seen.append(field_name[2:])
            elif field_name.startswith("e:"):
                expected.append(field_name[2:])
        read += len(page)
        if cursor == 0:
            return sorted(seen), sorted(expected), False
        if read >= MAX_FIELDS:
            return sorted(seen), sorted(expected), True


@dataclass(frozen=True, slots=True)
class Closed:
    """What :func:`close_group` did: ``queued`` tasks (complete), the group as read."""

    group: GroupState
    action: Action
    queued: int = 0
    tasks: list[str] = field(default_factory=list)  # the tasks planned (complete)


def close_group(
    client: redis.Redis,
    planner: Planner,
    name: str,
    action: Action,
    *,
    dramatiq: DramatiqKeys,
    channel: str | None = None,
) -> Closed:
    """Complete (fire the join's make now) or drop the open group ``name`` of
    ``planner``'s watcher, atomically. Raise :class:`GroupNotOpen` when it is not open
    (or was closed or reopened meanwhile), :class:`~..errors.RuleError` when its make
    cannot be made (complete), :class:`~..errors.WrongType` when a key holds another
    type (nothing written)."""
    group = read_group(client, JoinKeys.of(planner.rules.spec.input_queue), name)
    return close_read(client, planner, group, action, dramatiq=dramatiq, channel=channel)


def close_read(
    client: redis.Redis,
    planner: Planner,
    group: GroupState,
    action: Action,
    *,
    dramatiq: DramatiqKeys,
    channel: str | None = None,
) -> Closed:
    """:func:`close_group` of ``group`` as read before: done only if the group is still
    that open group (same join rule, same first member's time)."""
    if group.state != "open":
        raise GroupNotOpen(_not_open(group.name, group.state))
    tasks: list[PlannedTask] = []
    if action == "complete":
        if not group.rule:
            raise GroupNotOpen(
                f"group {group.name!r} has no member yet: its join rule is not known"
            )
        tasks = planned(planner, group)
    call_keys, header = closing_header(
        JoinKeys.of(planner.rules.spec.input_queue), planner.rules.spec, group.key, tasks,
        dramatiq, channel=channel, now_ms=int(time.time() * 1000),
        fields={"action": action, "rule": group.rule, "first": group.raw_first},
    )  # fmt: skip
    reply = Scripts(client)["join_close"](keys=call_keys.names, args=[header])
    refused = refusal(reply, call_keys.names)
    if refused is not None:
        raise wrong_type(refused, "nothing was written")
    if reply[0] != Status.DONE:
        raise GroupNotOpen(_not_open(group.name, text(reply[2])))
    return Closed(group, action, int(reply[1]), [t.task.decode() for t in tasks])


def planned(planner: Planner, group: GroupState) -> list[PlannedTask]:
    """The tasks of ``group``'s join make, from its first member's variables; raise
    :class:`~..errors.RuleError` when the watcher has no such join rule or they cannot
    be made."""
    return planner.completed(group.rule, group.event, group.name, int(time.time() * 1000))


def _not_open(name: str, state: str) -> str:
    if state == "":
        return f"group {name!r} is not open: there is no such group"
    if state == "reopened":
        return f"group {name!r} changed meanwhile (closed and opened anew): read it again"
    return f"group {name!r} is not open: it is {state}"

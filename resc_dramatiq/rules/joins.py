"""What an event does to a join's group, worked out from its variables (pure).

A join rule's event is a *member* of a group: :func:`membership` renders its group, its
member name and the group's expectation (the expected members, or their count). What
the join fires when the group completes is made with the event's variables plus
``join.group`` and ``join.size`` (:func:`join_variables`); the store's commit decides,
atomically, whether this event completes the group (see ``store/lua/joins.lua``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from ..errors import RuleError
from .model import Join
from .templates import Template

#: The variable holding, in a join make's message, the text the commit replaces with the
#: members' payloads (its ``members:`` argument); no template may name it (``check``
#: knows only ``join.group`` and ``join.size``), and a default kwargs skips dotted names.
MEMBERS_VARIABLE = "join.members"

#: What stands for the members' payloads in a join make made from its first member's
#: event (a deadline round's ``ready`` group, an operator's ``complete``), as JSON text.
MEMBERS_MARK = "\0resc:members\0"
MEMBERS_TOKEN = json.dumps(MEMBERS_MARK)  # as it stands in the JSON of a message

#: Most members a group may expect (a count, a list or a fan-out's tasks): the group's
#: state lives in one Redis hash.
MAX_MEMBERS = 100_000


class Membership(NamedTuple):
    """An event's place in a group: ``expect`` is the count of expected members (0:
    not known from this event: a fan-out's group), ``members`` their names when listed
    (a named tuple: made per member event, cheaper than a frozen dataclass)."""

    group: str
    member: str
    expect: int
    members: tuple[str, ...] = ()


def membership(join: Join, variables: Mapping[str, str]) -> Membership:
    """The group, member and expectation of a member event; raise :class:`RuleError`
    when a template gives no group, or no count of at least 1."""
    group = join.group.render(variables)
    if not group:
        raise RuleError("the join's group template gave an empty group name")
    member = join.member.render(variables)
    expect = join.expect
    if isinstance(expect, tuple):
        members = tuple(dict.fromkeys(t.render(variables) for t in expect))
        return Membership(group, member, len(members), members)
    if isinstance(expect, Template):
        return Membership(group, member, _count(expect.render(variables), expect.source))
    return Membership(group, member, expect or 0)


def _count(text: str, source: str) -> int:
    if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) <= MAX_MEMBERS:
        raise RuleError(
            f"the join's expectation {source!r} gave {text[:40]!r}, not a count of "
            f"members from 1 to {MAX_MEMBERS}"
        )
    return int(text)


def join_variables(variables: Mapping[str, str], group: str, size: int) -> dict[str, str]:
    """The variables of a join's makes: the event's, ``join.group`` and, when the size
    is known (not a fan-out's), ``join.size``."""
    made = {**variables, "join.group": group}
    if size:
        made["join.size"] = str(size)
    return made


def describe_join(join: Join) -> str:
    """A join as one line, for ``check``."""
    if join.fail:
        return f"fails group {join.group.source}"
    expect = join.expect
    if isinstance(expect, tuple):
        expected = "[" + ", ".join(t.source for t in expect) + "]"
    elif isinstance(expect, Template):
        expected = f"{expect.source} members"
    elif expect is None:
        expected = "the members its fan-out recorded"
    else:
        expected = f"{expect} members"
    line = f"join group {join.group.source}, member {join.member.source}, expects {expected}"
    if join.deadline_ms:
        line += f"; expires {join.deadline_ms / 1000:g} s after its first member"
        if join.expired:
            line += ": " + ", ".join(m.task.source for m in join.expired)
    return line

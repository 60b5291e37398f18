"""The compiled rules of a watcher: targets, make entries, rules and what they produce.

Built once by :mod:`.ruleset` from the config; per event, ``WatcherRules.matches``
finds the rules that match (every one, in config order, unanchored search, as resc;
a :class:`~.prefilter.Prefilter` skips those that cannot) and ``Rule.make`` fills
their templates into :class:`Task` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.model import FetchSpec, WatcherSpec
from ..errors import RuleError
from .lineage import DoneCause
from .patterns import Pattern
from .prefilter import Prefilter
from .templates import Template


@dataclass(frozen=True, slots=True)
class Target:
    """Where a made task goes: a raw list, or a Dramatiq actor on a queue."""

    queue: Template
    actor: str | None = None
    args: tuple[Any, ...] | None = None
    kwargs: Mapping[str, Any] | None = None
    delay_ms: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    release: str = "taken"
    data: tuple[str, ...] | str | None = None  # payload fields as kwargs, or all as one
    members: str | None = None  # a join's make: the members' payloads, as this kwarg


@dataclass(frozen=True, slots=True)
class Make:
    """A compiled make entry."""

    task: Template
    target: Target
    set: Template | None
    ttl_s: int | None
    group: Template | None = None  # the tasks it queues form this group (a fan-out)


@dataclass(slots=True)  # not frozen: made per event, and a frozen init costs
class Task:
    """One task an event produced: what, where, and which dedup set guards it."""

    rule: int
    task: str
    queue: str
    set: str | None
    make: Make
    variables: Mapping[str, str]
    data: Mapping[str, Any] | None = None  # the event's payload (an envelope's)

    @property
    def actor(self) -> str | None:
        """The Dramatiq actor, or None for a raw list push."""
        return self.make.target.actor


@dataclass(frozen=True, slots=True)
class Join:
    """A rule's compiled join (see :mod:`resc_dramatiq.config.joins`): ``expect`` is the
    expected members' templates, a count, a template giving a count, or None (a fan-out,
    or a rule that fails the group: ``fail``)."""

    group: Template
    member: Template
    expect: tuple[Template, ...] | int | Template | None
    deadline_ms: int
    expired: tuple[Make, ...]
    ttl_ms: int
    fail: bool = False
    #: its make passes the members' payloads (``members:``): each member's is kept
    keeps_data: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule."""

    name: str
    pattern: Pattern
    fetch: tuple[FetchSpec, ...]
    makes: tuple[Make, ...]
    join: Join | None = None

    def match(self, event: str, data: bytes | None = None) -> dict[str, str] | None:
        """The variables of ``event`` (unanchored search), or None when it does not match.

        ``data`` is the event's UTF-8 bytes when the caller has them (the router does).
        """
        variables = self.pattern.variables(event, _utf8(event) if data is None else data)
        if variables is None:
            return None
        variables["input_task"] = event
        return variables

    def make(
        self,
        index: int,
        variables: Mapping[str, str],
        makes: tuple[Make, ...] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> list[Task]:
        """The tasks of this rule for one set of variables (``makes``: other make entries
        of the rule than its ``make``, e.g. its join's ``expired``; ``data``: the
        event's payload)."""
        tasks = []
        for make in self.makes if makes is None else makes:
            queue = make.target.queue.render(variables)
            if not queue:
                raise RuleError(f"rule {self.name!r} made an empty queue name")
            fields = make.target.data
            if isinstance(fields, tuple) and not all(f in (data or ()) for f in fields):
                missing = [f for f in fields if f not in (data or ())]
                raise RuleError(
                    f"rule {self.name!r}: the event's payload has no field "
                    f"{', '.join(map(repr, missing))}"
                )
            task = make.task.render(variables)
            dedup = make.set.render(variables) if make.set is not None else None
            # positional: a task is made per event and rule, and keywords cost a third more
            tasks.append(Task(index, task, queue, dedup, make, variables, data))
        return tasks


@dataclass(slots=True)  # not frozen: made per event
class Match:
    """A rule that matched an event, with its variables (before any fetch)."""

    index: int
    rule: Rule
    variables: dict[str, str]
    data: dict[str, Any] | None = None  # the event's payload (an envelope's)
    cause: DoneCause | None = None  # the message whose done event it is (an envelope's)


@dataclass(frozen=True, slots=True)
class WatcherRules:
    """The compiled rules of one watcher, indexed by what their patterns need of an event."""

    spec: WatcherSpec
    rules: tuple[Rule, ...]
    prefilter: Prefilter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # built once with the rules, so that no event pays for it
        prefilter = Prefilter.build([rule.pattern for rule in self.rules])
        object.__setattr__(self, "prefilter", prefilter)

    def matches(self, event: str, data: bytes | None = None) -> list[Match]:
        """Every rule that matches ``event`` (``data``: its UTF-8 bytes), in config order.

        Only the rules the prefilter leaves can match; each of them is tried as resc
        tries every rule, so the result is the same as trying them all.
        """
        found = []
        rules = self.rules
        if data is None:
            data = _utf8(event)
        for index in self.prefilter.candidates(event):
            rule = rules[index]
            variables = rule.match(event, data)
            if variables is not None:
                found.append(Match(index, rule, variables))
        return found


def _utf8(event: str) -> bytes:
    """``event`` as the bytes RE2 reads (a lone surrogate kept, and matched by nothing)."""
    return event.encode("utf-8", "surrogatepass")

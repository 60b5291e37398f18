"""``@on_done``: rules written in code, on the actor they trigger.

::

    @on_done(r"^acq/(?P<process_id>\\d+)/(?P<product_id>\\d+)$",
             set="products/${product_id}/treat")
    @dramatiq.actor(queue_name="treatments")
    def treat(process_id: str, product_id: str) -> None: ...

reads "when an event matching the pattern is done, send ``treat`` with the named groups
as kwargs". The decorator checks the pattern against the function's parameters at once
(a required parameter no group provides, or a group that is no parameter, is a
:class:`~resc_dramatiq.errors.ConfigError`), records a :class:`CodeRule` into an explicit
:class:`Registry` and returns what it decorated unchanged: no Redis, no broker lookup.
:mod:`resc_dramatiq.worker.app` turns the recorded rules into config rules when the app loads.

Stack it above ``@dramatiq.actor`` (recommended: the actor's name and queue are known
right away); below it works too, the actor is then found on the app's broker at load.

``@on_schedule("*/5 * * * *", timezone="Europe/Paris")`` (or ``every_s=60``) records a
:class:`CodeSchedule` the same way: the router sends the actor on every tick (see
docs/scheduling.md), with ``kwargs`` templated on the tick's time variables.
``keep_lineage()`` (or ``keep_lineage("pipeline/done", ttl_s=3600)``) turns lineage
records on for a watcher, as ``lineage:`` does in a config file (docs/lineage.md).

Over ~250 lines on purpose: the rules in code of both decorators share one registry and
its merge with a config's rules.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from ..config.joins import Join, JoinSpec
from ..config.model import LINEAGE_MAX_RECORDS, LINEAGE_TTL_S, LineageSpec
from ..config.schedules import ScheduleSpec
from ..errors import ConfigError
from ..rules.patterns import compile_pattern
from ..rules.templates import Template

#: The watcher (input list) code rules join unless told otherwise; resc's usual name.
DEFAULT_WATCHER = "global/done"

F = TypeVar("F")

_FILLED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True, slots=True)
class CodeRule:
    """A rule declared with ``@on_done``: when ``pattern`` matches, send the actor."""

    pattern: str
    function: Callable[..., Any]
    actor: Any  # the dramatiq Actor when decorated above @dramatiq.actor, else None
    groups: tuple[str, ...]
    task: str | None
    set: str | None
    delay_ms: int | None
    release: Literal["taken", "done", "never"]
    watcher: str
    join: Join | None = None
    data: tuple[str, ...] = ()  # the parameters filled from the event's payload
    members: str | None = None  # a join's: the parameter given the members' payloads
    ttl_s: int | None = None  # its dedup entries are pruned after this long

    @property
    def where(self) -> str:
        """``@on_done('pattern') on module.function``, for messages."""
        fn = self.function
        return f"@on_done({self.pattern!r}) on {fn.__module__}.{fn.__qualname__}"

    def actor_on(self, broker: Any) -> Any:
        """The actor this rule sends on ``broker``, or None when it has none there."""
        return _actor_on(self.actor, self.function, broker)

    def rule_data(self, actor_name: str, queue: str) -> dict[str, Any]:
        """The rule as config data (``name``, ``on``, ``make``), for the rule engine."""
        default = f"{actor_name}/${{join.group}}" if self.join else None
        make: dict[str, Any] = {
            "actor": actor_name,
            "queue": queue,
            "task": self.task or default or default_task(actor_name, self.groups),
            "release": self.release,
        }
        if self.set is not None:
            make["set"] = self.set
        if self.delay_ms is not None:
            make["delay_ms"] = self.delay_ms
        if self.data:
            make["data"] = list(self.data)
        if self.members:
            make["members"] = self.members
        if self.ttl_s is not None:
            make["ttl_s"] = self.ttl_s
        rule = {"name": f"@on_done {actor_name}", "on": self.pattern, "make": make}
        if self.join is not None:  # the function's parameters that groups fill, only
            names = _parameters(self.function)
            make["kwargs"] = {g: f"${{{g}}}" for g in self.groups if g in names}
            rule["join"] = self.join.data()
        return rule


def _actor_on(decorated: Any, function: Callable[..., Any], broker: Any) -> Any:
    """The actor of ``function`` on ``broker`` (``decorated``: the actor, when known)."""
    if decorated is not None:
        return decorated if decorated.broker is broker else None
    for actor in broker.actors.values():
        if actor.fn is function:
            return actor
    return None


def default_task(actor_name: str, groups: tuple[str, ...]) -> str:
    """``<actor>/${group1}/${group2}…``: the task string when ``task`` is not given."""
    parts = [f"${{{g}}}" for g in groups] or ["${input_task}"]
    return "/".join([actor_name, *parts])


@dataclass(frozen=True, slots=True, eq=False)  # each declaration is its own
class CodeSchedule:
    """A schedule declared with ``@on_schedule``: on every tick, send the actor."""

    function: Callable[..., Any]
    actor: Any  # the dramatiq Actor when decorated above @dramatiq.actor, else None
    spec: dict[str, Any]  # the schedule as config data, without name and target

    @property
    def where(self) -> str:
        """``@on_schedule on module.function``, for messages."""
        fn = self.function
        return f"@on_schedule on {fn.__module__}.{fn.__qualname__}"

    def actor_on(self, broker: Any) -> Any:
        """The actor this schedule sends on ``broker``, or None when it has none there."""
        return _actor_on(self.actor, self.function, broker)

    def schedule_data(self, actor_name: str, queue: str) -> dict[str, Any]:
        """The schedule as config data, for the config's ``schedules``."""
        data = {"name": f"@on_schedule {actor_name}", **self.spec}
        return {**data, "actor": actor_name, "queue": queue}


class Registry:
    """Where ``@on_done``, ``@on_schedule`` and ``keep_lineage`` record; apps may keep
    their own instance."""

    def __init__(self) -> None:
        self.rules: list[CodeRule] = []
        self.schedules: list[CodeSchedule] = []
        #: the watchers (input lists) that keep lineage records, and how
        self.lineage: dict[str, LineageSpec] = {}

    def keep_lineage(
        self,
        watcher: str = DEFAULT_WATCHER,
        *,
        ttl_s: int = LINEAGE_TTL_S,
        max_records: int = LINEAGE_MAX_RECORDS,
        records: bool = True,
    ) -> None:
        """Keep lineage records on the watcher of the input list ``watcher`` (the done list
        its ``@on_done`` rules read), as ``lineage:`` does in a config file: each task its
        rules queue leaves a record kept ``ttl_s`` seconds (at most ``max_records``), so
        that ``resc-dramatiq why --app`` walks any task back to its root (docs/lineage.md).
        ``records=False``: the done events' causes (and traces) are read, nothing kept."""
        where = f"keep_lineage({watcher!r})"
        try:
            spec = LineageSpec(ttl_s=ttl_s, max_records=max_records, records=records)
        except ValidationError as e:
            raise ConfigError(
                [f"{where}: {err['loc'][0]}: {err['msg']}" for err in e.errors()]
            ) from None
        if self.lineage.get(watcher, spec) != spec:
            raise ConfigError(f"{where}: said before with other settings ({self.lineage[watcher]})")
        self.lineage[watcher] = spec

    def on_schedule(
        self,
        cron: str | None = None,
        *,
        every_s: int | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        event: str | None = None,
        kwargs: dict[str, Any] | None = None,
        catch_up: Literal["none", "last", "all"] = "none",
        grace_s: int = 60,
    ) -> Callable[[F], F]:
        """Declare that the decorated actor is sent on every tick of ``cron`` (or every
        ``every_s`` seconds) in ``timezone``; the other arguments are the config's
        (``name`` defaults to ``@on_schedule <actor>``, ``event`` is the task string)."""
        given = {"cron": cron, "every_s": every_s, "event": event, "kwargs": kwargs}
        spec = {k: v for k, v in given.items() if v is not None}
        spec.update(timezone=timezone, catch_up=catch_up, grace_s=grace_s)
        if name is not None:
            spec["name"] = name

        def decorate(target: F) -> F:
            actor = target if hasattr(target, "actor_name") and hasattr(target, "fn") else None
            function = actor.fn if actor is not None else target
            where = f"@on_schedule({cron or every_s!r}) on {target!r}"
            if not callable(function):
                raise ConfigError(f"{where}: not a function")
            try:  # checked now, where the mistake is, rather than when the app loads
                ScheduleSpec.model_validate({"name": "check", **spec, "actor": "check"})
            except ValidationError as e:
                where = f"@on_schedule on {function.__module__}.{function.__qualname__}"
                raise ConfigError(
                    [f"{where}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()]
                ) from None
            self.schedules.append(CodeSchedule(function, actor, spec))
            return target

        return decorate

    def on_done(
        self,
        pattern: str,
        *,
        task: str | None = None,
        set: str | None = None,
        delay_ms: int | None = None,
        release: Literal["taken", "done", "never"] = "taken",
        watcher: str = DEFAULT_WATCHER,
        join: Join | None = None,
        data: tuple[str, ...] | list[str] = (),
        members: str | None = None,
        ttl_s: int | None = None,
    ) -> Callable[[F], F]:
        """Declare that the decorated actor runs when an event matching ``pattern`` is done.

        ``task`` (default ``<actor>/${group}/…``) is the task string, and the actor's
        done event; ``set`` the dedup set; ``delay_ms`` delays the message; ``release``
        says when the set entry is removed; ``watcher`` is the input list the rule reads.
        With ``join`` (a :class:`~resc_dramatiq.config.joins.Join`), the actor runs once
        per group, when the group is complete (docs/joins.md): its parameters are filled
        from the named groups of the event that completed it (other groups, the member's
        for instance, need not be parameters), and ``task`` defaults to
        ``<actor>/${join.group}``. ``data`` names the parameters filled from the done
        event's payload (docs/data.md): its watcher reads envelopes. ``members``
        (with ``join``) names the parameter that receives the members' payloads.
        ``ttl_s`` prunes the dedup set's entries after that long; ``release="never"``
        (with ``set`` and ``ttl_s``) keeps a task in its set for that long after it ran:
        once per key for ``ttl_s`` seconds.
        """

        def decorate(target: F) -> F:
            actor = target if hasattr(target, "actor_name") and hasattr(target, "fn") else None
            function = actor.fn if actor is not None else target
            if not callable(function):
                raise ConfigError(f"@on_done({pattern!r}) decorates {target!r}, not a function")
            fields = tuple(data) + ((members,) if members else ())
            groups = _check(pattern, function, task, set, delay_ms, release, join, fields)
            if release == "never" and (set is None or ttl_s is None):
                where = f"@on_done({pattern!r}) on {function.__module__}.{function.__qualname__}"
                raise ConfigError(
                    f"{where}: release='never' keeps a task in its set until ttl_s prunes "
                    "it: give set= and ttl_s="
                )
            if members and join is None:
                where = f"@on_done({pattern!r}) on {function.__module__}.{function.__qualname__}"
                raise ConfigError(f"{where}: members= needs join=: only a join has members")
            self.rules.append(
                CodeRule(
                    pattern,
                    function,
                    actor,
                    groups,
                    task,
                    set,
                    delay_ms,
                    release,
                    watcher,
                    join,
                    tuple(data),
                    members,
                    ttl_s,
                )
            )
            return target

        return decorate

    def clear(self) -> None:
        """Forget every recorded rule and schedule (tests)."""
        self.rules.clear()
        self.schedules.clear()
        self.lineage.clear()


def _check(
    pattern: str,
    function: Callable[..., Any],
    task: str | None,
    dedup: str | None,
    delay_ms: int | None,
    release: str,
    join: Join | None = None,
    fields: tuple[str, ...] = (),
) -> tuple[str, ...]:
    where = f"@on_done({pattern!r}) on {function.__module__}.{function.__qualname__}"
    try:
        compiled = compile_pattern(pattern)
    except re.error as e:
        raise ConfigError(f"{where}: invalid regex: {e}") from None
    groups = tuple(compiled.groupindex)
    problems = _parameter_problems(groups, function, joined=join is not None, fields=fields)
    known = (*groups, "input_task")
    if join is not None:
        problems += _join_problems(join, known)
        known += ("join.group", "join.size")
    for name, value in (("task", task), ("set", dedup)):
        unknown = [n for n in Template.compile(value or "").names if n not in known]
        if unknown:
            problems.append(f"{name} uses unknown variable(s) {', '.join(unknown)}")
    if release not in ("taken", "done", "never"):
        problems.append(f"release must be 'taken', 'done' or 'never', not {release!r}")
    if delay_ms is not None and delay_ms < 0:
        problems.append("delay_ms must not be negative")
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])
    return groups


def _join_problems(join: Join, known: tuple[str, ...]) -> list[str]:
    """What is wrong with a join in code, checked where it is written."""
    try:
        spec = JoinSpec.model_validate(join.data())
    except ValidationError as e:
        return [f"join: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()]
    templates = [("group", spec.group), ("member", spec.member)]
    if isinstance(spec.expect, str):
        templates.append(("expect", spec.expect))
    elif isinstance(spec.expect, tuple):
        templates += [(f"expect[{i}]", m) for i, m in enumerate(spec.expect)]
    return [
        f"join.{name} uses unknown variable {n}"
        for name, value in templates
        for n in Template.compile(value).names
        if n not in known
    ]


def _parameters(function: Callable[..., Any]) -> set[str]:
    """The names a function's keyword arguments may fill."""
    return {p.name for p in inspect.signature(function).parameters.values() if p.kind in _FILLED}


def _parameter_problems(
    groups: tuple[str, ...],
    function: Callable[..., Any],
    *,
    joined: bool = False,
    fields: tuple[str, ...] = (),
) -> list[str]:
    """``joined``: a join's groups fill the parameters they name; others may be left.
    ``fields``: parameters the payload fills."""
    params = inspect.signature(function).parameters.values()
    names = _parameters(function)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    problems = []
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    missing = [n for n in required if n not in groups and n not in fields]
    if missing:
        given = "named group nor payload field (data=)" if fields else "named group"
        problems.append(f"required parameter(s) {', '.join(missing)} given by no {given}")
    extra = [g for g in groups if g not in names and not takes_any and not joined]
    unknown = [f for f in fields if f not in names and not takes_any]
    if unknown:
        problems.append(f"payload field(s) {', '.join(unknown)} are no parameter of the function")
    if extra:
        problems.append(f"named group(s) {', '.join(extra)} are no parameter of the function")
    return problems


#: The registry :func:`on_done` records into; :mod:`resc_dramatiq.worker.app` reads it.
registry = Registry()

#: ``@on_done(pattern, ...)`` recording into :data:`registry`.
on_done = registry.on_done

#: ``@on_schedule(cron, ...)`` recording into :data:`registry`.
on_schedule = registry.on_schedule

#: ``keep_lineage(watcher, ...)`` recording into :data:`registry`.
keep_lineage = registry.keep_lineage

"""Compiled schedules: a config's ``schedules`` with their ticks, templates and target.

``compile_schedules(config)`` builds one :class:`Schedule` per entry; per tick,
:meth:`Schedule.firing` gives what the store pushes: the event for an input list, or
the Dramatiq message, built by :func:`~.messages.build_message` exactly as the router
builds the messages of its rules. A schedule belongs to the watcher whose input list
it feeds (else to the first watcher): that watcher's router fires it, on its Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..config.model import Config
from ..config.schedules import ScheduleSpec, zone
from ..errors import ConfigError
from .lineage import Cause, record_of_message
from .messages import build_message
from .model import Make, Target, Task
from .ruleset import DRAMATIQ_QUEUE, did_you_mean
from .schedule_ticks import CronTicks, EveryTicks, Ticks
from .templates import Template


@dataclass(frozen=True, slots=True)
class Firing:
    """What one tick pushes: the event (raw) or a Dramatiq message and its Redis id
    (with its task, its message id and its lineage record, :func:`.lineage.record_of_message`)."""

    tick: int
    payload: bytes
    message_id: str = ""  # the Redis message id; "" for an event
    task: bytes = b""
    message: str = ""  # the Dramatiq message id; "" for an event
    record: bytes = b""


@dataclass(frozen=True, slots=True)
class Schedule:
    """One compiled schedule."""

    spec: ScheduleSpec
    ticks: Ticks
    zone: ZoneInfo
    event: Template
    queue: str  # the input list, or the actor's Dramatiq queue
    make: Make | None  # an actor target, as a rule's make entry
    owner: str  # input list of the watcher whose router fires it

    @property
    def name(self) -> str:
        """The schedule's name (its state in Redis is kept under it)."""
        return self.spec.name

    @property
    def actor(self) -> str | None:
        """The Dramatiq actor it sends, or None when it pushes an event."""
        return self.spec.actor

    def variables(self, tick: int) -> dict[str, str]:
        """The template variables of ``tick``, its time in the schedule's zone."""
        moment = datetime.fromtimestamp(tick, self.zone)
        return {
            "epoch": str(tick),
            "iso": moment.isoformat(),
            "date": moment.strftime("%Y-%m-%d"),
            "time": moment.strftime("%H:%M:%S"),
            "hour": moment.strftime("%H"),
            "minute": moment.strftime("%M"),
            "name": self.spec.name,
        }

    def render(self, tick: int) -> str:
        """The event (for an actor: its task string) of ``tick``."""
        return self.event.render(self.variables(tick))

    def task(self, tick: int) -> Task | None:
        """The actor task of ``tick`` as the rules make it (None for an event)."""
        if self.make is None:
            return None
        variables = self.variables(tick)
        task = self.event.render(variables)
        return Task(
            rule=0, task=task, queue=self.queue, set=None, make=self.make, variables=variables
        )

    def firing(self, tick: int, *, now_ms: int) -> Firing:
        """What the store pushes for ``tick`` (``now_ms``: the message's timestamp)."""
        task = self.task(tick)
        if task is None:
            return Firing(tick, self.render(tick).encode())
        cause = Cause(None, task.task, f"schedule {self.spec.name}", self.owner)
        envelope = build_message(task, now_ms=now_ms, done_queue=self.owner, cause=cause)
        ids = (envelope.message_id, envelope.redis_message_id, self.actor or "")
        record = record_of_message(task.task, self.queue, cause, ids, envelope.payload, now_ms)
        return Firing(
            tick, envelope.payload, envelope.redis_message_id, task.task.encode(), ids[0], record
        )


def compile_schedules(
    config: Config, *, actor_queues: Mapping[str, str] | None = None
) -> tuple[Schedule, ...]:
    """Every schedule of ``config``; actor targets checked against ``actor_queues``.

    Raise :class:`ConfigError` with each located problem.
    """
    inputs = [w.input_queue for w in config.spec.watchers]
    problems: list[str] = []
    compiled = []
    for i, spec in enumerate(config.spec.schedules):
        where = f"schedules[{i}]"
        queue = spec.queue or inputs[0]
        make = None
        if spec.actor is not None:
            queue = _actor_queue(spec, f"{where}", config, actor_queues, problems)
            make = _make(spec, queue)
        compiled.append(
            Schedule(
                spec=spec,
                ticks=_ticks(spec),
                zone=zone(spec.timezone),
                event=Template.compile(spec.event),
                queue=queue,
                make=make,
                owner=queue if make is None and queue in inputs else inputs[0],
            )
        )
    if problems:
        raise ConfigError(problems)
    return tuple(compiled)


def _ticks(spec: ScheduleSpec) -> Ticks:
    if spec.every_s is not None:
        return EveryTicks(spec.every_s)
    assert spec.cron is not None  # the model asks for one of them
    return CronTicks(spec.cron, zone(spec.timezone))


def _make(spec: ScheduleSpec, queue: str) -> Make:
    kwargs = _compile_value(spec.kwargs or {})
    target = Target(queue=Template.compile(queue), actor=spec.actor, kwargs=kwargs)
    return Make(task=Template.compile(spec.event), target=target, set=None, ttl_s=None)


def _compile_value(value: Any) -> Any:
    """A JSON value with each string compiled, as the rules' kwargs (lists as tuples)."""
    if isinstance(value, str):
        return Template.compile(value)
    if isinstance(value, list | tuple):
        return tuple(_compile_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _compile_value(v) for k, v in value.items()}
    return value


def _actor_queue(
    spec: ScheduleSpec,
    where: str,
    config: Config,
    actor_queues: Mapping[str, str] | None,
    problems: list[str],
) -> str:
    """The Dramatiq queue of an actor schedule: given, else the actor's, else 'default'."""
    actor, queue = spec.actor, spec.queue
    assert actor is not None
    if actor_queues is not None and actor not in actor_queues:
        hint = did_you_mean(actor, actor_queues)
        problems.append(f"{config.locate(where + '.actor')}: unknown actor {actor!r}{hint}")
    elif actor_queues is not None and queue is not None and queue != actor_queues[actor]:
        problems.append(
            f"{config.locate(where + '.queue')}: actor {actor!r} consumes queue "
            f"{actor_queues[actor]!r}, not {queue!r}"
        )
    elif actor_queues is not None:
        queue = actor_queues[actor]
    queue = queue or "default"
    if not DRAMATIQ_QUEUE.fullmatch(queue):
        problems.append(
            f"{config.locate(where + '.queue')}: {queue!r} is no Dramatiq queue name: "
            "no actor could consume it"
        )
    return queue

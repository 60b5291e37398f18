"""What ``status`` shows of a schedule: its last firing, that firing's lag, the next one.

Read from the schedule's state hash (see ``store/lua/fire.lua``); times on the Redis
clock, the ticks also in the schedule's timezone.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from ..rules.schedule_ticks import next_ticks
from ..rules.schedules import Schedule
from ..store.keys import DramatiqKeys
from ..store.keyspace import text
from ..store.schedules import ScheduleState, state_key
from .odd_keys import OddKey, Reads, as_int, noted


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    """One schedule, as its Redis state tells it."""

    name: str
    when: str  # the cron expression, or "every N s"
    timezone: str
    target: str  # "list <queue>" or "actor <name> on <queue>"
    last_tick: int | None  # None: never fired
    last_tick_local: str | None
    last_fired_age_s: float | None  # how long ago it was pushed
    lag_s: float | None  # of the last firing: scheduled time -> pushed
    fired: int  # ticks fired in all
    by: str | None  # the router instance that fired the last tick
    next_tick: int | None
    next_tick_local: str | None
    next_in_s: float | None
    problem: str | None = None  # the state hash is odd: shown as never fired, and why


def schedule_status(
    schedule: Schedule, client: redis.Redis, now_s: float, namespace: str
) -> ScheduleStatus:
    """The status of ``schedule`` (its Dramatiq messages in ``namespace``); ``now_s`` is
    the Redis clock."""
    state, odd = read_state(client, state_key(schedule, DramatiqKeys(namespace)))
    spec = schedule.spec
    target = f"list {schedule.queue}"
    if schedule.actor is not None:
        target = f"actor {schedule.actor} on {schedule.queue}"
    upcoming = next_ticks(schedule.ticks, int(now_s), 1)
    next_tick = upcoming[0] if upcoming else None
    return ScheduleStatus(
        name=schedule.name,
        when=spec.cron or f"every {spec.every_s} s",
        timezone=spec.timezone,
        target=target,
        last_tick=state.tick,
        last_tick_local=None if state.tick is None else schedule.variables(state.tick)["iso"],
        last_fired_age_s=None
        if state.fired_ms is None
        else round(now_s - state.fired_ms / 1000, 3),
        lag_s=None if state.lag_ms is None else state.lag_ms / 1000,
        fired=state.fired,
        by=state.by,
        next_tick=next_tick,
        next_tick_local=None if next_tick is None else schedule.variables(next_tick)["iso"],
        next_in_s=None if next_tick is None else round(next_tick - now_s, 3),
        problem=None if odd is None else str(odd),
    )


NEVER_FIRED = ScheduleState(tick=None, fired_ms=None, lag_ms=None, fired=0, by=None)


def read_state(client: redis.Redis, key: str) -> tuple[ScheduleState, OddKey | None]:
    """The record of a schedule in its state hash ``key``; a key of another type or a
    field that is no integer (anyone may write Redis) reads as never fired, with the
    :class:`OddKey` that says why (noted once)."""
    reads = Reads(client)
    none: dict[bytes, bytes] = {}
    found: dict[bytes, bytes] = reads.read(key, "hash", lambda: client.hgetall(key), none)  # type: ignore[arg-type, return-value]
    if reads.odd:
        return NEVER_FIRED, reads.odd[0]
    fields = {text(k): v for k, v in found.items()}
    numbers: dict[str, int | None] = {}
    for name in ("tick", "fired_ms", "lag_ms", "fired"):
        raw = fields.get(name)
        numbers[name] = None if raw is None else as_int(raw)
        if raw is not None and numbers[name] is None:
            shown = text(raw)[:40]
            return NEVER_FIRED, noted(OddKey(key, f"field {name!r} is no integer: {shown!r}"))
    by = fields.get("by")
    return ScheduleState(
        tick=numbers["tick"],
        fired_ms=numbers["fired_ms"],
        lag_ms=numbers["lag_ms"],
        fired=numbers["fired"] or 0,
        by=None if by is None else text(by),
    ), None

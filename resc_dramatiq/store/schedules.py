"""The schedules' Redis side: read the last fired ticks, fire due ticks with ``fire.lua``.

:meth:`ScheduleStore.fire` is the one codec of ``fire.lua`` (its header gives the
layout): the ticks of one schedule go in one call, which pushes those later than the
recorded last tick and moves it forward, all at once. Any number of routers may call it
for the same tick: one pushes, the others are told it was fired already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

from ..rules.schedules import Firing, Schedule
from .connect import is_cluster
from .keys import DramatiqKeys, schedule_state
from .lineage import LineageBucket, lineage_header
from .scripts import Scripts, refusal, wrong_type
from .slots import key_slot
from .tasks import KeyList, add_record


@dataclass(frozen=True, slots=True)
class Fired:
    """What one call of ``fire.lua`` did."""

    fired: int  # ticks this call pushed (0: another router had fired them)
    last_tick: int
    lag_s: float  # of the newest tick pushed (0 when none)


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A schedule's record in Redis (None: never fired)."""

    tick: int | None
    fired_ms: int | None
    lag_ms: int | None
    fired: int
    by: str | None


class ScheduleStore:
    """Fires the schedules of one router on its Redis (Dramatiq's ``namespace``)."""

    def __init__(self, *, scripts: Scripts, namespace: str, instance: str) -> None:
        self.scripts = scripts
        self.client = scripts.client
        self.dramatiq = DramatiqKeys(namespace)
        self.instance = instance

    def last_ticks(self, schedules: Sequence[Schedule]) -> tuple[float, list[int | None]]:
        """The Redis clock and the last fired tick of each schedule (None: never fired),
        in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        on_cluster = is_cluster(self.client)
        if not on_cluster:  # a cluster pipeline takes keyed commands only
            pipe.time()
        for schedule in schedules:
            pipe.hget(state_key(schedule, self.dramatiq), "tick")
        replies = pipe.execute()
        (seconds, micros), *ticks = [self.client.time(), *replies] if on_cluster else replies
        return float(seconds) + micros / 1e6, [None if v is None else int(v) for v in ticks]

    def fire(
        self, schedule: Schedule, firings: Sequence[Firing], lineage: LineageBucket | None = None
    ) -> Fired:
        """Push the firings whose tick is later than the recorded one, oldest first; an
        actor's messages keep their lineage records in ``lineage`` (None: none kept; on
        a cluster, only when it shares the slot of the schedule's queue)."""
        target = [schedule.queue] if schedule.actor is None else self._dramatiq(schedule.queue)
        keys = KeyList([state_key(schedule, self.dramatiq), *target])
        if schedule.actor is None or (
            lineage is not None
            and is_cluster(self.client)
            and key_slot(lineage.key) != key_slot(keys.names[0])
        ):
            lineage = None
        records: list[bytes | str] = []
        ticks: list[str | bytes | int] = []
        for f in firings:
            at = add_record(records, f.task, f.message, f.record) if lineage is not None else 0
            ticks += [f.tick, f.payload, f.message_id, at]
        header = msgpack.packb(lineage_header(lineage, keys, records), use_bin_type=False)
        kind = "r" if schedule.actor is None else "d"
        args: list[str | bytes | int] = [kind, self.instance, header, *ticks]
        reply = self.scripts["fire"](keys=keys.names, args=args)
        refused = refusal(reply, keys.names)
        if refused is not None:
            raise wrong_type(refused, f"schedule {schedule.name!r} fired nothing")
        fired, last_tick, lag_ms = (int(v) for v in reply)
        return Fired(fired=fired, last_tick=last_tick, lag_s=lag_ms / 1000)

    def _dramatiq(self, queue: str) -> list[str]:
        return [self.dramatiq.queue(queue), self.dramatiq.messages(queue)]


def state_key(schedule: Schedule, dramatiq: DramatiqKeys) -> str:
    """The state hash of ``schedule``, in the slot of the key it pushes to."""
    target = schedule.queue if schedule.actor is None else dramatiq.queue(schedule.queue)
    return schedule_state(schedule.name, target)

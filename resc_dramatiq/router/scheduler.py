"""The router's scheduler: fires the due ticks of the schedules its watchers own.

Every router instance runs one; none is elected. Each round reads the clock, the
schedules' last fired ticks, works out the due ticks
(:func:`~resc_dramatiq.rules.schedule_ticks.due`) and fires them through ``fire.lua``,
which pushes each tick once however many routers try. Then it sleeps until the next
tick (at most a second, so that a router whose Redis was away soon tries again).

The clock is Redis's (``TIME``), not the host's: every router reads the same clock,
so one whose host clock runs a few seconds ahead does not fire a tick early, and the
lag is measured on the clock that stamps the push. Tests inject a clock of their own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from ..config.model import WatcherSpec
from ..rules.ruleset import RuleSet
from ..rules.schedule_ticks import due
from ..rules.schedules import Schedule, compile_schedules
from ..store.lineage import LineageBucket
from ..store.resilience import Availability, Backoff, is_transient
from ..store.schedules import ScheduleStore
from .options import Observer

logger = logging.getLogger(__name__)

#: Longest sleep between rounds, seconds.
MAX_WAIT_S = 1.0
#: Wake this long after a tick's time: the Redis clock must have passed it too.
WAKE_MARGIN_S = 0.002


class Scheduler:
    """Fires ``schedules`` through ``store``; ``clock`` (unix seconds) defaults to Redis's."""

    def __init__(
        self,
        *,
        schedules: Sequence[Schedule],
        store: ScheduleStore,
        observer: Observer,
        availability: Availability,
        clock: Callable[[], float] | None = None,
        watchers: Sequence[WatcherSpec] = (),
    ) -> None:
        self.schedules = tuple(schedules)
        #: the watchers owning the schedules: an actor tick's lineage record goes to its owner's
        self.owners = {w.input_queue: w for w in watchers}
        self.store = store
        self.observer = observer
        self.availability = availability
        self.clock = clock  # None: the Redis clock, read with the last ticks
        self._warned: dict[str, int | None] = {}  # schedule -> last tick when told
        for schedule in self.schedules:
            observer.schedule_started(schedule.name)

    @classmethod
    def of(
        cls,
        ruleset: RuleSet,
        *,
        store: ScheduleStore,
        observer: Observer,
        availability: Availability,
        clock: Callable[[], float] | None = None,
    ) -> Scheduler | None:
        """The scheduler of the schedules ``ruleset``'s watchers own (None: they own none)."""
        watching = {w.spec.input_queue for w in ruleset.watchers}
        owned = [s for s in compile_schedules(ruleset.config) if s.owner in watching]
        if not owned:
            return None
        return cls(
            schedules=owned,
            store=store,
            observer=observer,
            availability=availability,
            clock=clock,
            watchers=[w.spec for w in ruleset.watchers],
        )

    def fire_due(self) -> tuple[int, float]:
        """Fire every due tick now; return the ticks this router pushed and the clock."""
        redis_now, lasts = self.store.last_ticks(self.schedules)
        now = redis_now if self.clock is None else self.clock()
        now_s = int(now)
        pushed = 0
        for schedule, last in zip(self.schedules, lasts, strict=True):
            spec = schedule.spec
            found = due(
                schedule.ticks, last=last, now=now_s, catch_up=spec.catch_up, grace_s=spec.grace_s
            )
            if found.skipped and self._warned.get(schedule.name, -1) != last:
                self._warned[schedule.name] = last
                logger.warning(
                    "schedule %r: ticks missed since %s left out (catch_up %s)",
                    schedule.name,
                    last,
                    spec.catch_up,
                )
            if not found.fire:
                continue
            now_ms = int(now * 1000)
            firings = [schedule.firing(t, now_ms=now_ms) for t in found.fire]
            owner = self.owners.get(schedule.owner)
            # the bucket of Redis's clock, which why reads (a test's clock may be far off)
            at_ms = int(redis_now * 1000)
            bucket = LineageBucket.of(owner, at_ms) if owner is not None else None
            result = self.store.fire(schedule, firings, bucket)
            if result.fired:
                pushed += result.fired
                self.observer.schedule_fired(schedule.name, result.fired, result.lag_s)
                logger.debug(
                    "schedule %r: fired %d tick(s), last %d, lag %.3f s",
                    schedule.name,
                    result.fired,
                    result.last_tick,
                    result.lag_s,
                )
        return pushed, now

    def wait_s(self, now: float) -> float:
        """Seconds from ``now`` to just after the next tick of any schedule (capped)."""
        wait = MAX_WAIT_S
        for schedule in self.schedules:
            upcoming = next(iter(schedule.ticks.after(int(now))), None)
            if upcoming is not None:
                wait = min(wait, upcoming - now + WAKE_MARGIN_S)
        return max(wait, WAKE_MARGIN_S)

    def run(self, stop: threading.Event) -> None:
        """Fire ticks until ``stop``; Redis outages are waited out with backoff."""
        names = ", ".join(repr(s.name) for s in self.schedules)
        logger.info("firing schedule(s) %s", names)
        backoff = Backoff(first_s=0.1, cap_s=MAX_WAIT_S)
        told = ""  # the error last logged: a key of the wrong type is told once, not per round
        while not stop.is_set():
            try:
                _, now = self.fire_due()
            except Exception as e:
                if is_transient(e):
                    self.availability.failed(e)
                elif str(e) != told:
                    logger.exception("scheduler round failed; retrying")
                told = str(e)
                backoff.wait(stop)
                continue
            told = ""
            backoff.reset()
            self.availability.succeeded()
            stop.wait(self.wait_s(now))

"""``TestClock``: the time a test's pipeline runs on, moved forward by the test.

The clock is the real time plus what the test advanced (:meth:`TestClock.advance`); it
never goes back. While a :class:`~.pipeline.Pipeline` runs, it is the time of:

* **Dramatiq's delays**: the Redis broker stamps a delayed message's ``eta``, and the
  worker's consumers compare it, with ``current_millis``, which
  :meth:`TestClock.installed` replaces in ``dramatiq.brokers.redis`` and
  ``dramatiq.worker`` of the test process (so retries' backoffs are on it too);
* **schedules**: the in-process router's scheduler reads it
  (:class:`~resc_dramatiq.router.scheduler.Scheduler`'s ``clock``);
* **join deadlines**: they are kept on Redis's clock, so advancing moves the open
  groups' deadlines back by as much (:func:`shift_deadlines`); firing them is the
  production path's (``expire.lua``, once, on Redis's clock).

Anything else (dedup windows, markers, heartbeats of routers) keeps the real time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import cast

import dramatiq.brokers.redis
import dramatiq.worker
import redis

from ..store.joins import JoinKeys

#: The modules whose ``current_millis`` the clock replaces: the eta's stamp, its check.
DRAMATIQ_CLOCKS = (dramatiq.brokers.redis, dramatiq.worker)


class TestClock:
    """Real time plus what the test advanced; thread-safe."""

    __test__ = False  # not a test class, for pytest's collector

    def __init__(self) -> None:
        self._ahead_ms = 0
        self._lock = threading.Lock()

    @property
    def ahead_ms(self) -> int:
        """How far this clock runs ahead of the real one, ms."""
        return self._ahead_ms

    def now(self) -> float:
        """The clock's time, unix seconds."""
        return time.time() + self._ahead_ms / 1000

    def millis(self) -> int:
        """The clock's time, unix ms (Dramatiq's ``current_millis``)."""
        return int(time.time() * 1000) + self._ahead_ms

    def advance(self, seconds: float) -> int:
        """Move the clock ``seconds`` forward (not back: ValueError); return the ms."""
        if not seconds >= 0:
            raise ValueError(f"TestClock.advance: {seconds!r} is not a number of seconds >= 0")
        step = math.ceil(seconds * 1000)
        with self._lock:
            self._ahead_ms += step
        return step

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Dramatiq's delays in this process are stamped and checked on this clock."""
        name = "current_millis"  # imported by each module from dramatiq.common
        before: list[Callable[[], int]] = [getattr(m, name) for m in DRAMATIQ_CLOCKS]
        for module in DRAMATIQ_CLOCKS:
            setattr(module, name, self.millis)
        try:
            yield
        finally:
            for module, previous in zip(DRAMATIQ_CLOCKS, before, strict=True):
                if getattr(module, name) == self.millis:
                    setattr(module, name, previous)


def shift_deadlines(client: redis.Redis, join_keys: Iterable[JoinKeys], ms: int) -> int:
    """Move the deadline and first member's time of every open join group ``ms`` back,
    as if that time had passed on Redis's clock; return the groups moved. Run between
    rounds (a group closed meanwhile is left: ``ZADD XX``, and only open groups' hashes
    are written)."""
    moved = 0
    for keys in {k.prefix: k for k in join_keys}.values():
        due = cast(list[tuple[bytes, float]], client.zrange(keys.due, 0, -1, withscores=True))
        first = dict(
            cast(list[tuple[bytes, float]], client.zrange(keys.open, 0, -1, withscores=True))
        )
        for group, deadline in due:
            state = client.hget(group, "state")
            if state != b"open":
                continue
            pipe = client.pipeline(transaction=True)
            pipe.zadd(keys.due, {group: deadline - ms}, xx=True)
            pipe.hset(group, "due", int(deadline - ms))
            if group in first:
                pipe.zadd(keys.open, {group: first[group] - ms}, xx=True)
                pipe.hset(group, "first", int(first[group] - ms))
            pipe.execute()
            moved += 1
    return moved

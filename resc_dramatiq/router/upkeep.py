"""One router instance's upkeep: heartbeats, reclaims, the outbox's sweep, join deadlines,
pruning, leaving.

A thread of the router runs :meth:`Upkeep.run`: it marks the instance alive on every
watcher, hands the taken lists of dead instances back, finishes outbox entries a dead
router left (on a cluster), fires the join groups past their deadline, notes a
Sentinel failover and prunes dedup sets with a ``ttl_s``. :meth:`Upkeep.leave` hands
back what the taken lists still hold when the router stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from ..store.housekeeping import Pruner
from ..store.joins import Deadlines
from ..store.resilience import Availability, Backoff, PrimaryWatch, is_transient
from .loop import WatcherLoop
from .options import RouterOptions

# the router's own log, where operators (and their filters) have always read these lines
logger = logging.getLogger("resc_dramatiq.router.router")

#: Tries of the leave script when stopping (it is idempotent; its reply may be lost).
LEAVE_ATTEMPTS = 4


class Upkeep:
    """The upkeep of one router instance's watchers."""

    def __init__(
        self,
        *,
        instance: str,
        loops: Sequence[WatcherLoop],
        options: RouterOptions,
        availability: Availability,
        primary: PrimaryWatch,
        pruner: Pruner | None,
    ) -> None:
        self.instance, self.loops, self.options = instance, loops, options
        self.availability, self.primary, self.pruner = availability, primary, pruner
        #: The join deadlines of the watchers whose join rules have one.
        self.deadlines = [
            Deadlines(
                scripts=loop.store.scripts,
                spec=loop.spec,
                planner=loop.planner,
                dramatiq=loop.store.settings.dramatiq,
                channel=loop.store.settings.channel,
            )
            for loop in loops
            if Deadlines.needed(loop.planner)
        ]

    def heartbeat(self) -> None:
        """Mark this instance alive on every watcher; reclaim the lists of dead ones."""
        ttl_ms = int(self.options.heartbeat_ttl_s * 1000)
        for loop in self.loops:
            for dead in loop.store.heartbeat(ttl_ms):
                if dead == self.instance:
                    continue
                moved = loop.store.reclaim(dead, own=False)
                if moved > 0:
                    logger.warning(
                        "watcher %r: instance %s is gone; %d event(s) handed back",
                        loop.spec.input_queue,
                        dead,
                        moved,
                    )

    def sweep_outbox(self, grace_ms: int) -> int:
        """On a cluster: finish the outbox entries older than ``grace_ms`` (left by a
        router that died after its commit, or by an unreachable slot); entries settled."""
        settled = 0
        for loop in self.loops:
            if loop.store.outbox is not None:
                settled += loop.store.outbox.sweep(grace_ms)
        return settled

    def fire_deadlines(self) -> int:
        """Fire the join groups whose deadline has come (a bounded number per watcher);
        groups fired now."""
        return sum(f.fired for d in self.deadlines for f in d.fire())

    def run(self, stop: threading.Event) -> None:
        """Beat, reclaim, sweep and prune every quarter of the heartbeat's TTL until
        ``stop``; an outage is said once (the router's availability log)."""
        interval_s = self.options.heartbeat_ttl_s / 4
        next_prune = time.monotonic()
        while not stop.is_set():
            try:
                self.heartbeat()
                self.sweep_outbox(int(self.options.heartbeat_ttl_s * 1000))
                self.fire_deadlines()
                self.availability.succeeded()
                self.primary.check()
                if self.pruner is not None and time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.options.prune_interval_s
                    self.prune()
            except Exception as e:
                if not is_transient(e):
                    logger.exception("heartbeat or pruning failed")
                else:
                    self.availability.failed(e)
            stop.wait(interval_s)

    def prune(self) -> int:
        """One bounded pruning step of the dedup sets with a ``ttl_s``; entries removed."""
        if self.pruner is None:
            return 0
        removed = 0
        for p in self.pruner.step():
            removed += p.removed
            if p.removed:
                logger.info(
                    "dedup set %r: %d entr%s older than %d s pruned",
                    p.set,
                    p.removed,
                    "y" if p.removed == 1 else "ies",
                    p.ttl_s,
                )
        return removed

    def leave(self) -> None:
        """Hand back what the taken lists still hold and leave the live instances.

        Leaving twice does no harm, so a leave whose reply was lost is simply sent again
        (a few times, briefly); if Redis stays away, our heartbeat expires and the other
        instances take the events back.
        """
        for loop in self.loops:
            backoff = Backoff(first_s=0.05, cap_s=0.5)
            while True:
                try:
                    moved = loop.store.leave()
                    break
                except Exception as e:
                    if not is_transient(e) or backoff.failures >= LEAVE_ATTEMPTS - 1:
                        logger.warning("could not deregister instance %s: %s", self.instance, e)
                        return
                    backoff.wait(threading.Event())
            if moved:
                logger.warning(
                    "watcher %r: %d uncommitted event(s) handed back on leaving",
                    loop.spec.input_queue,
                    moved,
                )

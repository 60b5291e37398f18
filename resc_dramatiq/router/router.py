"""The router: take events reliably, apply the rules, commit each batch atomically.

Per watcher, a loop takes a batch (a blocking ``BLMOVE`` for the first event, then a
non-blocking drain), computes its tasks in Python, and commits the whole batch with
one Lua script (see :mod:`resc_dramatiq.store`). A crash anywhere leaves the events
in the instance's taken list: nothing is lost, nothing is queued twice. A heartbeat
thread keeps this instance alive and hands the taken lists of dead instances back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from ..errors import RuleError
from ..rules.ruleset import Match, RuleSet, Task
from ..store.housekeeping import Pruner, set_ttls
from ..store.resilience import Availability, Backoff, is_transient
from ..store.store import CommitResult, Store, WatcherKeys
from .loop import WatcherLoop

logger = logging.getLogger(__name__)

#: Expands a matched rule into one variable set per fetched result (see ``fetch``).
Expander = Callable[[Match], list[dict[str, str]]]


class Observer:
    """Hooks the router calls; the default does nothing (metrics override them)."""

    def batch_committed(
        self,
        watcher: str,
        events: int,
        result: CommitResult,
        unmatched: int,
        commit_s: float,
        event_to_commit_s: float,
    ) -> None:
        """A batch was committed."""

    def reconnected(self, watcher: str) -> None:
        """Redis came back after an outage."""


@dataclass(frozen=True, slots=True)
class RouterOptions:
    """Tuning of a router; the defaults suit most fleets."""

    batch_size: int = 500
    block_s: float = 1.0
    heartbeat_ttl_s: float = 6.0
    namespace: str | None = None  # None: the config's ``namespace``
    restart_limit: int = 5
    prune_interval_s: float = 60.0  # dedup sets of makes with ``ttl_s`` (see housekeeping)


class Router:
    """Routes the events of every watcher of a rule set.

    ``run()`` blocks until ``stop()``; ``run_until_idle()`` processes what is queued
    and returns (for tests and embedding).
    """

    def __init__(
        self,
        *,
        ruleset: RuleSet,
        client: redis.Redis,
        instance: str | None = None,
        options: RouterOptions | None = None,
        observer: Observer | None = None,
        expander: Expander | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.store = Store(client=client)
        self.instance = instance or uuid.uuid4().hex[:12]
        self.options = options or RouterOptions()
        self.observer = observer or Observer()
        self._expander = expander
        self._stop = threading.Event()
        self.availability = Availability(logger, f"router {self.instance}")
        self.loops = [WatcherLoop(self, rules) for rules in ruleset.watchers]
        self.failed: BaseException | None = None
        self.pruner = Pruner(ruleset=ruleset, client=client) if set_ttls(ruleset) else None

    def expand_tasks(self, match: Match) -> list[Task]:
        """The tasks of a matched rule, through the fetchers when it has any."""
        if not match.rule.fetch:
            return match.rule.make(match.index, match.variables)
        if self._expander is None:
            raise RuleError(f"rule {match.rule.name!r} has fetchers but no fetch client")
        return [
            t
            for variables in self._expander(match)
            for t in match.rule.make(match.index, variables)
        ]

    def prefetch(self, matches: list[Match]) -> None:
        """Let the expander start a batch's fetches at once (see ``Fetcher.prefetch``)."""
        prefetch = getattr(self._expander, "prefetch", None)
        if matches and prefetch is not None:
            prefetch(matches)

    def stop(self) -> None:
        """Finish the batches in hand and return from ``run()``."""
        self._stop.set()

    def run_until_idle(self, *, max_batches: int = 1_000_000) -> int:
        """Process batches until every input list is empty; return the events taken."""
        self.heartbeat()
        for loop in self.loops:
            loop.recover()
        total = 0
        for _ in range(max_batches):
            taken = sum(loop.run_once() for loop in self.loops)
            if taken == 0:
                break
            total += taken
        return total

    def heartbeat(self) -> None:
        """Mark this instance alive on every watcher; reclaim the lists of dead ones."""
        ttl_ms = int(self.options.heartbeat_ttl_s * 1000)
        for loop in self.loops:
            for dead in self.store.heartbeat(loop.keys, self.instance, ttl_ms):
                if dead == self.instance:
                    continue
                moved = self.store.reclaim(loop.keys, loop.spec, dead, own=False)
                if moved > 0:
                    logger.warning(
                        "watcher %r: instance %s is gone; %d event(s) handed back",
                        loop.spec.input_queue,
                        dead,
                        moved,
                    )

    def run(self) -> None:
        """Run every watcher, each in its own thread, until ``stop()``.

        A watcher that dies of an unexpected error is logged and restarted with
        backoff; after ``restart_limit`` failures in a row the router stops and
        re-raises the error (the CLI exits non-zero).
        """
        threads = [self._start(self._heartbeat_loop, "heartbeat")]
        threads += [
            self._start(self._supervise, loop.spec.input_queue, loop) for loop in self.loops
        ]
        self._stop.wait()
        for thread in threads:
            thread.join()
        self._deregister()
        if self.failed is not None:
            raise self.failed

    def _start(self, target: Callable[..., None], name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"resc:{name}", daemon=True)
        thread.start()
        return thread

    def _supervise(self, loop: WatcherLoop) -> None:
        backoff = Backoff(first_s=0.5, cap_s=10.0)
        while not self._stop.is_set():
            loop.healthy = False
            try:
                loop.run(self._stop)
                return
            except Exception as e:
                logger.exception("watcher %r died", loop.spec.input_queue)
                if loop.healthy:  # it worked for a while: count this failure afresh
                    backoff.reset()
                if backoff.failures + 1 >= self.options.restart_limit:
                    logger.error(
                        "watcher %r failed %d times in a row; stopping the router",
                        loop.spec.input_queue,
                        backoff.failures + 1,
                    )
                    self.failed = e
                    self._stop.set()
                    return
                backoff.wait(self._stop)

    def _heartbeat_loop(self) -> None:
        interval_s = self.options.heartbeat_ttl_s / 4
        next_prune = time.monotonic()
        while not self._stop.is_set():
            try:
                self.heartbeat()
                self.availability.succeeded()
                if self.pruner is not None and time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.options.prune_interval_s
                    self.prune()
            except Exception as e:
                if not is_transient(e):
                    logger.exception("heartbeat or pruning failed")
                else:
                    self.availability.failed(e)
            self._stop.wait(interval_s)

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

    def _deregister(self) -> None:
        """Hand back what the taken lists still hold and leave the live instances."""
        for loop in self.loops:
            try:
                moved = self.store.leave(loop.keys, self.instance)
            except Exception as e:  # Redis down: our heartbeat expires, others reclaim
                logger.warning("could not deregister instance %s: %s", self.instance, e)
                return
            if moved:
                logger.warning(
                    "watcher %r: %d uncommitted event(s) handed back on leaving",
                    loop.spec.input_queue,
                    moved,
                )


def stats(client: redis.Redis, keys: WatcherKeys) -> Mapping[str, int]:
    """The counters of a watcher."""
    raw = client.hgetall(keys.stats)
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

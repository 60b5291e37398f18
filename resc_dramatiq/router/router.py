"""The router: take events reliably, plan them, commit each batch atomically.

The path of an event, top-down: per watcher, a :class:`~.loop.WatcherLoop` takes a
batch (a blocking ``BLMOVE`` for the first event, then a non-blocking drain), hands it
to the watcher's :class:`~resc_dramatiq.rules.plan.Planner` (pure Python: matches,
variables, fetched expansions, tasks, Dramatiq messages, failures), and commits what
the planner returned with one Lua script through the watcher's
:class:`~resc_dramatiq.store.store.WatcherStore`. A crash anywhere leaves the events
in the instance's taken list: nothing is lost, nothing is queued twice. A heartbeat
thread keeps this instance alive and hands the taken lists of dead instances back; a
scheduler thread (:mod:`.scheduler`) fires the schedules its watchers own.

On a Redis Cluster (``client`` a ``RedisCluster``) each watcher's store talks to the
primary that serves the watcher's slot (:func:`~resc_dramatiq.store.cluster.slot_client`).

Over ~250 lines on purpose: building, running, supervising and draining the watchers;
the instance's upkeep is in :mod:`.upkeep`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import cast

import redis

from ..errors import ConfigError
from ..rules.plan import Expander, Planner
from ..rules.ruleset import RuleSet
from ..store.cluster import slot_client
from ..store.connect import is_cluster
from ..store.housekeeping import Pruner, set_ttls
from ..store.keys import WatcherKeys
from ..store.keyspace import counters
from ..store.layout import check_layout
from ..store.resilience import (
    Availability,
    Backoff,
    PrimaryWatch,
    Replication,
    is_transient,
)
from ..store.schedules import ScheduleStore
from ..store.scripts import Scripts
from ..store.store import WatcherStore
from .loop import WatcherLoop
from .options import CommitSpans, Observer, RouterOptions
from .scheduler import Scheduler
from .upkeep import Upkeep

logger = logging.getLogger(__name__)


class Router:
    """Routes the events of every watcher of a rule set.

    ``run()`` blocks until ``stop()``; ``run_until_idle()`` processes what is queued
    and returns (for tests and embedding), with the same loop.
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
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.client = client
        self.instance = instance or uuid.uuid4().hex[:12]
        self.options = options or RouterOptions()
        self.observer = observer or Observer()
        self._stop = threading.Event()
        self.availability = Availability(logger, f"router {self.instance}")
        wait = self.options.replica_wait
        self.replication = (
            None if wait is None else Replication(logger, f"router {self.instance}", wait)
        )
        home, cluster = scripts_of(client)
        self.primary = PrimaryWatch(logger, f"router {self.instance}", client)
        namespace = self.options.namespace or ruleset.config.spec.namespace
        self.loops = [
            WatcherLoop(
                planner=Planner(rules, expander=expander),
                store=WatcherStore.of(
                    home(rules.spec.input_queue),
                    ruleset,
                    rules,
                    instance=self.instance,
                    namespace=namespace,
                    cluster=cluster,
                    wait=self.options.replica_wait,
                    replication=self.replication,
                ),
                options=self.options,
                availability=self.availability,
                observer=self.observer,
            )
            for rules in ruleset.watchers
        ]
        if self.options.trace:
            spans = commit_spans()
            for loop in self.loops:
                loop.tracer = spans
        self.failed: BaseException | None = None
        #: This instance's upkeep: heartbeats, reclaims, the outbox's sweep, pruning.
        self.upkeep = Upkeep(
            instance=self.instance,
            loops=self.loops,
            options=self.options,
            availability=self.availability,
            primary=self.primary,
            pruner=Pruner(ruleset=ruleset, client=client) if set_ttls(ruleset) else None,
        )
        #: Fires the schedules of these watchers (None: they own none); ``clock`` for tests.
        self.scheduler = Scheduler.of(
            ruleset,
            store=ScheduleStore(
                scripts=cluster or home(""), namespace=namespace, instance=self.instance
            ),
            observer=self.observer,
            availability=self.availability,
            clock=clock,
        )

    def heartbeat(self) -> None:
        """Mark this instance alive on every watcher; reclaim the lists of dead ones."""
        self.upkeep.heartbeat()

    def sweep_outbox(self, grace_ms: int) -> int:
        """On a cluster: finish the outbox entries older than ``grace_ms``; entries settled."""
        return self.upkeep.sweep_outbox(grace_ms)

    def prune(self) -> int:
        """One bounded pruning step of the dedup sets with a ``ttl_s``; entries removed."""
        return self.upkeep.prune()

    def stop(self) -> None:
        """Finish the batches in hand and return from ``run()``."""
        self._stop.set()

    def run_until_idle(self, *, max_rounds: int = 1_000) -> int:
        """Process batches until every input list is empty; return the events committed.

        For tests and embedding: the due schedule ticks and join deadlines are fired and
        the outbox swept first, as the router's threads would; then each watcher runs its
        production loop
        (:meth:`WatcherLoop.run <.loop.WatcherLoop.run>`) until it finds nothing to take,
        again while a pass over the watchers commits anything (one watcher's tasks may
        be another's events); a refused commit, or an outage that lasts, is raised.
        """
        check_layout(self.client, f"router {self.instance}")
        self.upkeep.heartbeat()
        if self.scheduler is not None:
            self.scheduler.fire_due()
        self.upkeep.sweep_outbox(0)
        self.upkeep.fire_deadlines()
        total = 0
        for _ in range(max_rounds):
            done = sum(loop.run(self._stop, until_idle=True) for loop in self.loops)
            total += done
            if not done:
                break
        return total

    def run(self) -> None:
        """Run every watcher, each in its own thread, until ``stop()``.

        A watcher that dies of an unexpected error is logged and restarted with
        backoff; after ``restart_limit`` failures in a row the router stops and
        re-raises the error (the CLI exits non-zero). A Redis whose keyspace layout this
        release cannot read stops it before it registers (:meth:`check_layout`).
        """
        if not self.check_layout():
            return  # stopped while Redis was unreachable
        threads = [self._start(self.upkeep.run, "heartbeat", self._stop)]
        if self.scheduler is not None:
            threads.append(self._start(self.scheduler.run, "schedules", self._stop))
        threads += [
            self._start(self._supervise, loop.spec.input_queue, loop) for loop in self.loops
        ]
        self._stop.wait()
        for thread in threads:
            thread.join()
        self.upkeep.leave()
        if self.failed is not None:
            raise self.failed

    def check_layout(self) -> bool:
        """Record or check the keyspace's layout (see :mod:`~resc_dramatiq.store.layout`)
        before this instance registers; raise :class:`~resc_dramatiq.errors.LayoutRefused`
        when this release cannot read it. An unreachable Redis is waited for, with
        backoff, as the watchers wait; False when stopped meanwhile."""
        # tries as often as the heartbeat beats: an outage's end is seen as soon
        backoff = Backoff(first_s=0.05, cap_s=self.options.heartbeat_ttl_s / 4)
        while not self._stop.is_set():
            try:
                check_layout(self.client, f"router {self.instance}")
            except Exception as e:
                if not is_transient(e):
                    raise
                self.availability.failed(e)
                backoff.wait(self._stop)
            else:
                self.availability.succeeded()
                return True
        return False

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
                if is_transient(e):  # an outage or failover the loop did not absorb
                    self.availability.failed(e)
                    logger.debug("watcher %r stopped", loop.spec.input_queue, exc_info=True)
                else:
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


def stats(client: redis.Redis, keys: WatcherKeys) -> Mapping[str, int]:
    """The counters of a watcher."""
    return counters(client, keys.stats)


def scripts_of(client: redis.Redis) -> tuple[Callable[[str], Scripts], Scripts | None]:
    """The scripts of a watcher, by its input list, and (on a cluster) the scripts on the
    cluster client, for the outbox's other slots and the schedules.

    On one server every watcher shares the client; on a cluster each watcher's scripts
    run on a client of the primary that serves its input list's slot.
    """
    if is_cluster(client):
        cluster = client
        return (lambda key: Scripts(slot_client(cluster, key))), Scripts(cast(redis.Redis, cluster))
    shared = Scripts(client)
    return (lambda key: shared), None


def commit_spans() -> CommitSpans:
    """The commit spans of ``RouterOptions.trace`` (ConfigError without the otel extra)."""
    try:
        from ..tracing import CommitTracer  # the otel extra, imported only when asked for
    except ImportError as e:
        raise ConfigError(
            f"tracing needs the otel extra (pip install 'resc-dramatiq[otel]'): {e}"
        ) from None
    return CommitTracer()

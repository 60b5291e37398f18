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
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis

from .errors import OwnershipLost, RuleError, WrongType
from .housekeeping import Pruner, set_ttls
from .messages import build_message
from .resilience import Availability, Backoff, is_transient
from .rules import Match, RuleSet, Task, WatcherRules, decode_event
from .store import Batch, CommitResult, FailedEvent, PlannedTask, Store, WatcherKeys

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


class WatcherLoop:
    """One watcher of one router instance."""

    def __init__(self, router: Router, rules: WatcherRules) -> None:
        self.router = router
        self.rules = rules
        self.spec = rules.spec
        self.keys = WatcherKeys.of(rules.spec, router.instance)
        self.channel = router.ruleset.config.spec.listener_channel
        self.down = False  # this watcher saw Redis fail and has not succeeded since
        self.healthy = False  # a full take-commit round succeeded since the last start
        self.blocked: str | None = None  # why commits are refused (a key of the wrong type)

    def register(self) -> None:
        """Put this instance among the live ones before taking anything.

        An instance that took events before its first heartbeat and then died would be
        unknown to the others, and its taken list would never be handed back.
        """
        ttl_ms = int(self.router.options.heartbeat_ttl_s * 1000)
        self.router.store.heartbeat(self.keys, self.router.instance, ttl_ms)

    def recover(self) -> int:
        """Hand back what this instance's taken list (and resc's own) still holds."""
        store, spec = self.router.store, self.spec
        moved = store.reclaim(self.keys, spec, self.router.instance, own=True)
        moved += store.reclaim(self.keys, spec, "", own=True)
        if moved:
            logger.warning(
                "watcher %r: %d event(s) left in taken lists handed back", spec.input_queue, moved
            )
        return moved

    def run(self, stop: threading.Event) -> None:
        """Take, compute and commit until ``stop`` is set; survive Redis outages.

        While Redis runs a batch's commit script, the next batch is taken and computed
        (see :meth:`round`). Batches in hand are committed before stopping; if Redis
        stays down, their events stay safely in the taken list, for the next start or
        another instance. A commit whose reply was lost is simply retried (the store
        recognises it). Whatever a take left behind without an answer (a stray event)
        is handed back before the next take.
        """
        backoff = Backoff()
        refusals = Backoff(first_s=1.0, cap_s=30.0)
        held: deque[Batch] = deque()  # taken and computed, not known committed; oldest first
        recovered = False
        with ThreadPoolExecutor(1, thread_name_prefix=f"resc:{self.spec.input_queue}") as pool:
            while not (stop.is_set() and (not held or backoff.failures >= 3)):
                try:
                    if not recovered:
                        self.register()
                        self.recover()
                        recovered = True
                    self.round(held, stop, pool)
                    backoff.reset()
                    refusals.reset()
                    self.succeeded()
                except OwnershipLost as e:
                    logger.warning("watcher %r: %s; batch dropped", self.spec.input_queue, e)
                    held.clear()
                    recovered = False
                except WrongType as e:
                    if stop.is_set():
                        return  # the batches stay in the taken list, handed back on leaving
                    self.refused(e)
                    refusals.wait(stop)
                except Exception as e:
                    if not is_transient(e):
                        raise
                    self.down = True
                    self.router.availability.failed(e)
                    # without an answer, a take may have moved events we do not hold
                    recovered = recovered and bool(held)
                    backoff.wait(stop if not held else threading.Event())

    def round(self, held: deque[Batch], stop: threading.Event, pool: ThreadPoolExecutor) -> None:
        """Commit the oldest batch in hand; meanwhile take and compute the next one.

        The commit runs in ``pool`` (its own connection): Redis executes the script while
        this thread computes, and each batch is committed only after the one before it.
        """
        if not held:
            batch = self.take(block=True)
            if batch is None:
                return
            held.append(batch)
        committing = pool.submit(self.commit, held[0])
        try:
            if len(held) == 1 and not stop.is_set():
                following = self.take(block=False)
                if following is not None:
                    held.append(following)
        finally:
            committing.result()  # the commit's error, if any, wins over the take's
        held.popleft()

    def refused(self, error: WrongType) -> None:
        """A commit met a key of the wrong type: say it once, keep the batch, retry."""
        if self.blocked is None:
            logger.error(
                "watcher %r: cannot commit: %s. The batch stays in %r and is retried "
                "until the key is fixed (or the config is, and the router restarted)",
                self.spec.input_queue,
                error,
                self.keys.taken,
            )
        self.blocked = str(error)

    def succeeded(self) -> None:
        """A round went through: note it, and tell the observer when an outage ended."""
        if self.blocked is not None:
            logger.warning("watcher %r: the commit goes through again", self.spec.input_queue)
            self.blocked = None
        self.healthy = True
        self.router.availability.succeeded()
        if self.down:
            self.down = False
            self.router.observer.reconnected(self.spec.input_queue)

    def run_once(self) -> int:
        """Process one batch without blocking; return the number of events taken."""
        batch = self.take(block=False)
        if batch is None:
            return 0
        self.commit(batch)
        return len(batch.events)

    def take(self, *, block: bool) -> Batch | None:
        """Take a batch and compute its tasks (None when nothing came)."""
        store, opts = self.router.store, self.router.options
        events = store.take(self.keys, opts.batch_size)
        if not events and block:
            first = store.take_blocking(self.keys, opts.block_s)
            if first is None:
                self.hand_back_strays()
                return None
            events = [first, *store.take(self.keys, opts.batch_size - 1)]
        if not events:
            return None
        return self.compute(events)

    def hand_back_strays(self) -> None:
        """Hand back events found in the taken list while holding no batch.

        A take whose answer was lost, and that the client retried by itself, leaves
        them there without an error reaching the loop.
        """
        if self.router.store.client.llen(self.keys.taken):
            self.recover()

    def compute(self, events: list[bytes]) -> Batch:
        """Match, fill templates and build messages for a batch (pure Python)."""
        now = time.time()
        batch = Batch(events=events, taken_at=now)
        now_ms = int(now * 1000)
        found = [self.rules.matches(decode_event(event)) for event in events]
        self.router.prefetch([m for matches in found for m in matches if m.rule.fetch])
        for index, (event, matches) in enumerate(zip(events, found, strict=True)):
            if not matches:
                batch.unmatched.append(event)
                continue
            tasks: list[Task] = []
            for m in matches:
                try:
                    tasks += self.router.expand_tasks(m)
                except Exception as e:  # a poison event must not block the batch
                    error = f"{type(e).__name__}: {e}"
                    batch.failed.append(FailedEvent(event, m.rule.name, error))
                    break
            else:
                for m in matches:
                    field = f"{m.rule.name}|matched"
                    batch.counters[field] = batch.counters.get(field, 0) + 1
                batch.tasks += (self.plan(t, index, now_ms) for t in tasks)
        return batch

    def plan(self, task: Task, index: int, now_ms: int) -> PlannedTask:
        """Turn a task into what the commit script writes."""
        rule = self.rules.rules[task.rule].name
        if task.actor is None:
            return PlannedTask(task.task.encode(), task.queue, task.set, index, rule)
        envelope = build_message(task, now_ms=now_ms, done_queue=self.spec.input_queue)
        ns = self.router.options.namespace or self.router.ruleset.config.spec.namespace
        return PlannedTask(
            task=task.task.encode(),
            queue_key=f"{ns}:{envelope.queue_name}",
            set_key=task.set,
            event_index=index,
            rule=rule,
            messages_key=f"{ns}:{envelope.queue_name}.msgs",
            payload=envelope.payload,
            redis_message_id=envelope.redis_message_id,
        )

    def commit(self, batch: Batch) -> CommitResult:
        """Commit a computed batch atomically."""
        started = time.perf_counter()
        result = self.router.store.commit(
            self.keys, batch, channel=self.channel, max_attempts=self.spec.max_attempts
        )
        done = time.perf_counter()
        if result.repeated:
            logger.info(
                "watcher %r: a commit's reply was lost; it had gone through", self.spec.input_queue
            )
        self.router.observer.batch_committed(
            self.spec.input_queue,
            len(batch.events),
            result,
            len(batch.unmatched),
            done - started,
            time.time() - batch.taken_at,
        )
        return result


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

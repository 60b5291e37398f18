"""One watcher of one router instance: take a batch, compute its tasks, commit it.

:class:`WatcherLoop` runs in its own thread of a :class:`~resc_dramatiq.router.Router`.
Each round commits the oldest batch in hand (in a one-thread pool, so Redis runs the
script while this thread takes and computes the next batch), survives Redis outages
with backoff, and keeps a batch refused for a key of the wrong type until it goes
through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ..errors import OwnershipLost, WrongType
from ..rules.messages import build_message
from ..rules.ruleset import Task, WatcherRules, decode_event
from ..store.resilience import Backoff, is_transient
from ..store.store import Batch, CommitResult, FailedEvent, Pending, PlannedTask, WatcherKeys

if TYPE_CHECKING:
    from .router import Router

logger = logging.getLogger(__name__)


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
        self.taking: Pending | None = None  # a take sent, its events not read yet

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
        try:
            while not (stop.is_set() and (not held or backoff.failures >= 3)):
                try:
                    if not recovered:
                        self.register()
                        self.recover()
                        recovered = True
                    self.round(held, stop)
                    backoff.reset()
                    refusals.reset()
                    self.succeeded()
                except OwnershipLost as e:
                    logger.warning("watcher %r: %s; batch dropped", self.spec.input_queue, e)
                    self.drop_take()
                    held.clear()
                    recovered = False
                except WrongType as e:
                    self.drop_take()
                    if stop.is_set():
                        return  # the batches stay in the taken list, handed back on leaving
                    self.refused(e)
                    refusals.wait(stop)
                except Exception as e:
                    self.drop_take()
                    if not is_transient(e):
                        raise
                    self.down = True
                    self.router.availability.failed(e)
                    # without an answer, a take may have moved events we do not hold
                    recovered = recovered and bool(held)
                    backoff.wait(stop if not held else threading.Event())
        finally:
            self.drop_take()  # its events, if any, are handed back on leaving

    def round(self, held: deque[Batch], stop: threading.Event) -> None:
        """Commit the oldest batch in hand; meanwhile compute the next one.

        The commit script is sent, the next batch computed while Redis runs it, then the
        reply read. The next batch's events come from a take sent before the commit
        (Redis runs it first; its reply is read at once) or, under a backlog (the last
        take came back full), from a take sent behind the previous round's commit: then
        three batches are in flight, one committed, one computed, one taken. With no
        backlog, no take waits behind a commit, so latency stays low. Each batch is
        committed only after the one before it; a commit owns only the oldest events of
        the taken list.
        """
        if not held:
            batch = self.take(block=True) if self.taking is None else self.taken()
            if batch is None:
                return
            held.append(batch)
        taking, self.taking = self.taking, None
        store, started = self.router.store, time.perf_counter()
        limit = self.router.options.batch_size
        more = len(held) == 1 and not stop.is_set()  # room for one more batch in hand
        if taking is None and more:  # (re)start the pipeline: Redis runs it before the commit
            taking = store.send_take(self.keys, limit)
        pending = store.send_commit(
            self.keys, held[0], channel=self.channel, max_attempts=self.spec.max_attempts
        )
        try:
            events = list(taking.reply()) if taking is not None else []
            if more and len(events) == limit:  # a backlog: keep a take behind the commit
                self.taking = store.send_take(self.keys, limit)
            if events:
                held.append(self.compute(events))
        finally:
            result = pending.result()  # the commit's error, if any, wins over the others
        self.committed(held.popleft(), result, started)

    def taken(self) -> Batch | None:
        """The events of the take sent in the previous round, computed (None if none)."""
        assert self.taking is not None
        taking, self.taking = self.taking, None
        events = list(taking.reply())
        return self.compute(events) if events else None

    def drop_take(self) -> None:
        """Forget a take in flight (after an error, or when stopping): its events, if it
        ran, stay in the taken list, where the ownership check and the recovery of
        strays find them."""
        if self.taking is not None:
            self.taking.discard()
            self.taking = None

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
        self.committed(batch, result, started)
        return result

    def committed(self, batch: Batch, result: CommitResult, started: float) -> None:
        """Tell the observer (and the log, for a repeat) what a commit did."""
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

"""One watcher of one router instance: take a batch, plan it, commit it.

:class:`WatcherLoop` runs in its own thread. It is handed what it needs (the watcher's
planner and store, the options, the router's availability log and observer) and
reaches back into nothing. Each round commits the oldest batch in hand while the
next is taken and planned, survives Redis outages with backoff, and keeps a batch
refused for a key of the wrong type until it goes through.

Over ~250 lines on purpose: the pipelined round and the error handling around it are one
state machine over one record of what is in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial

from ..errors import OwnershipLost, WrongType
from ..rules.batch import Batch
from ..rules.plan import Planner
from ..store.commit import CommitResult
from ..store.resilience import Availability, Backoff, is_transient
from ..store.store import PendingTake, WatcherStore
from .options import CommitSpans, Observer, RouterOptions

logger = logging.getLogger(__name__)


@dataclass
class InFlight:
    """What a watcher has in hand: batches taken and planned, not known committed
    (oldest first), and a take sent whose events are not read yet."""

    batches: deque[Batch] = field(default_factory=deque)
    take: PendingTake | None = None

    def drop_take(self) -> None:
        """Forget the take in flight: its events, if it ran, stay in the taken list,
        where the ownership check and the recovery of strays find them."""
        if self.take is not None:
            self.take.discard()
            self.take = None

    def __bool__(self) -> bool:
        return bool(self.batches) or self.take is not None


class WatcherLoop:
    """One watcher of one router instance."""

    def __init__(
        self,
        *,
        planner: Planner,
        store: WatcherStore,
        options: RouterOptions,
        availability: Availability,
        observer: Observer,
    ) -> None:
        self.planner = planner
        self.store = store
        self.options = options
        self.availability = availability
        self.observer = observer
        self.spec = planner.rules.spec
        self.keys = store.keys
        self.down = False  # this watcher saw Redis fail and has not succeeded since
        self.healthy = False  # a full take-commit round succeeded since the last start
        self.blocked: str | None = None  # why commits are refused (a key of the wrong type)
        self.flight = InFlight()
        #: The last take sent behind a commit found the input list empty: the next
        #: round waits for an event at once (a blocking take returns at once if one
        #: came) and leaves the rest to the take behind its commit
        self.drained = False
        #: Records a span per committed batch (``RouterOptions.trace``; None: none).
        self.tracer: CommitSpans | None = None

    def register(self) -> None:
        """Put this instance among the live ones before taking anything.

        An instance that took events before its first heartbeat and then died would be
        unknown to the others, and its taken list would never be handed back.
        """
        self.store.heartbeat(int(self.options.heartbeat_ttl_s * 1000))

    def recover(self) -> int:
        """Hand back what this instance's taken list (and resc's own) still holds."""
        moved = self.store.reclaim(self.store.instance, own=True)
        moved += self.store.reclaim("", own=True)  # resc's own taken list
        if moved:
            logger.warning(
                "watcher %r: %d event(s) left in taken lists handed back",
                self.spec.input_queue,
                moved,
            )
        return moved

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> int:
        """Take, plan and commit until ``stop`` is set; survive Redis outages. Returns
        the number of events committed.

        While Redis runs a batch's commit script, the next batch is taken and planned
        (see :meth:`round`). Batches in hand are committed before stopping; if Redis
        stays down, their events stay safely in the taken list, for the next start or
        another instance. A commit whose reply was lost is simply retried (the store
        recognises it). Whatever a take left behind without an answer (a stray event)
        is handed back before the next take.

        ``until_idle``: also stop once a round finds nothing to take and nothing is in
        hand (``Router.run_until_idle``, for tests and embedding): takes do not block,
        and a refused commit, or an outage that lasts three tries, is raised.
        """
        backoff = Backoff()
        refusals = Backoff(first_s=1.0, cap_s=30.0)
        flight = self.flight
        recovered = False
        total = 0
        try:
            while not (stop.is_set() and (not flight.batches or backoff.failures >= 3)):
                try:
                    if not recovered:
                        self.register()
                        self.recover()
                        recovered = True
                    committed = self.round(stop, block=not until_idle)
                    total += committed
                    self.store.rule_counts.tick()
                    backoff.reset()
                    refusals.reset()
                    self.succeeded()
                    if until_idle and not committed and not flight and self.idle():
                        break
                except OwnershipLost as e:
                    logger.warning("watcher %r: %s; batch dropped", self.spec.input_queue, e)
                    flight.drop_take()
                    flight.batches.clear()
                    recovered = False
                except WrongType as e:
                    flight.drop_take()
                    if stop.is_set():
                        return total  # the batches stay in the taken list, handed back on leaving
                    self.refused(e)
                    if until_idle:
                        raise
                    refusals.wait(stop)
                except Exception as e:
                    flight.drop_take()
                    if not is_transient(e) or (until_idle and backoff.failures >= 2):
                        raise
                    self.down = True
                    self.availability.failed(e)
                    # without an answer, a take may have moved events we do not hold
                    recovered = recovered and bool(flight.batches)
                    backoff.wait(stop if not flight.batches else threading.Event())
        finally:
            flight.drop_take()  # its events, if any, are handed back on leaving
            self.store.rule_counts.flush()
        return total

    def round(self, stop: threading.Event, *, block: bool = True) -> int:
        """Commit the oldest batch in hand; meanwhile plan the next one.

        Returns the number of events committed (0: nothing came; with ``block``, after
        waiting ``block_s`` for the first event).

        The commit script is sent, the next batch planned while Redis runs it, then the
        reply read. The next batch's events come from a take sent before the commit
        (Redis runs it first; its reply is read at once) or, under a backlog (the last
        take came back full), from a take sent behind the previous round's commit: then
        three batches are in flight, one committed, one planned, one taken. With no
        backlog, no take waits behind a commit, so latency stays low. Each batch is
        committed only after the one before it; a commit owns only the oldest events of
        the taken list.
        """
        flight, store = self.flight, self.store
        if not flight.batches:
            batch = self.take(block=block) if flight.take is None else self.taken()
            if batch is None:
                return 0
            flight.batches.append(batch)
        taking, flight.take = flight.take, None
        started = time.perf_counter()
        limit = self.options.batch_size
        more = len(flight.batches) == 1 and not stop.is_set()  # room for one more in hand
        if taking is None and more:  # (re)start the pipeline: Redis runs it before the commit
            taking = store.send_take(limit)
        pending = store.commit(flight.batches[0])
        events: list[bytes] = []
        try:
            events = taking.events() if taking is not None else []
            self.drained = taking is not None and not events
            if more and len(events) == limit:  # a backlog: keep a take behind the commit
                flight.take = store.send_take(limit)
            if not pending.applies_outbox:
                self.plan_next(events)
        except BaseException:
            pending.result()  # the commit's error, if any, wins over the others
            raise
        try:
            # on a cluster, a commit with tasks in other slots is short, and applying
            # them long: the next batch is planned and encoded meanwhile
            result = pending.result(meanwhile=partial(self.plan_next, events, encode=True))
        finally:
            self.plan_next(events)  # if not yet (the parts were not sent)
        batch = flight.batches.popleft()
        self.committed(batch, result, started)
        return len(batch.events)

    def plan_next(self, events: list[bytes], *, encode: bool = False) -> None:
        """Plan ``events`` (emptied: planned once) as the next batch in hand; ``encode``:
        encode its commit too."""
        if events:
            self.flight.batches.append(self.planner.plan(events[:]))  # the batch keeps its own
            events.clear()
        if encode and len(self.flight.batches) > 1:
            self.store.prepare(self.flight.batches[1])

    def taken(self) -> Batch | None:
        """The events of the take sent in the previous round, planned (None if none)."""
        assert self.flight.take is not None
        taking, self.flight.take = self.flight.take, None
        events = taking.events()
        return self.planner.plan(events) if events else None

    def idle(self) -> bool:
        """True when the input list is empty (strays were handed back to it)."""
        return not self.store.client.llen(self.keys.input)

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
        self.availability.succeeded()
        if self.down:
            self.down = False
            self.observer.reconnected(self.spec.input_queue)

    def take(self, *, block: bool) -> Batch | None:
        """Take a batch and plan it (None when nothing came)."""
        store, opts = self.store, self.options
        # after a take that found the list empty, the takes that would most likely find
        # it empty again are left out: the blocking move returns at once if an event
        # came, and the events after it come with the take sent behind its commit (two
        # calls fewer per event at a low rate; a burst's first batch holds one event)
        drained = block and self.drained
        events = [] if drained else store.take(opts.batch_size)
        if not events and block:
            first = store.take_blocking(opts.block_s)
            if first is None:
                self.hand_back_strays()
                return None
            events = [first] if drained else [first, *store.take(opts.batch_size - 1)]
        if not events:
            self.hand_back_strays()  # idle, as after a blocking take that timed out
            return None
        return self.planner.plan(events)

    def hand_back_strays(self) -> int:
        """Hand back events found in the taken list while holding no batch.

        A take whose answer was lost, and that the client retried by itself, leaves
        them there without an error reaching the loop.
        """
        return self.recover() if self.store.holds_events() else 0

    def committed(self, batch: Batch, result: CommitResult, started: float) -> None:
        """Tell the observer (and the log, for a repeat) what a commit did."""
        done = time.perf_counter()
        if result.repeated:
            logger.info(
                "watcher %r: a commit's reply was lost; it had gone through", self.spec.input_queue
            )
        self.observer.batch_committed(
            self.spec.input_queue,
            len(batch.events),
            result,
            len(batch.unmatched),
            done - started,
            time.time() - batch.taken_at,
        )
        if self.tracer is not None:
            self.tracer.committed(
                self.spec.input_queue,
                batch.traces,
                events=len(batch.events),
                queued=result.queued,
                taken_at=batch.taken_at,
            )

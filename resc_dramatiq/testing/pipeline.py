"""``Pipeline``: run an app's actors and its rules in-process until nothing is left.

A real ``dramatiq.Worker`` (few threads) runs the broker's actors; done events are
routed either in the worker (``inline=True``: ``Completion`` routes them) or by an
in-process :class:`~resc_dramatiq.router.router.Router` driven on its production loop
(``Router.run_until_idle``). The router is there in both modes when the rules have
watchers: it routes what reaches an input list from elsewhere (a schedule's ticks, a
test's own events), fires the due ticks and join deadlines, as production's router does.
:meth:`Pipeline.run_until_idle` repeats until every Dramatiq queue, delay queue and acks
set of the broker's namespace, every watcher's input and taken lists are empty and no
message is being processed (see :mod:`.pending`); after ``timeout_s`` it raises
:class:`NotIdle`, an ``AssertionError`` listing what is pending where.

Time is the pipeline's :class:`~.clock.TestClock`: :meth:`Pipeline.advance` moves it
through every schedule tick in between, running until idle at each.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq import Broker
from dramatiq.middleware import Retries

from ..compat import broker_client, broker_namespace
from ..config.model import Config
from ..errors import ConfigError
from ..router.options import RouterOptions
from ..router.router import Router
from ..rules.ruleset import RuleSet
from ..rules.schedule_ticks import between
from ..store.joins import JoinKeys
from ..worker.completion import Completion
from .clock import TestClock, shift_deadlines
from .happened import Happened
from .made import routed_ruleset
from .pending import READS, Pending, pending
from .recorder import Recorder

#: How long a round waits before looking again, in seconds.
POLL_S = 0.005
#: The most schedule ticks one :meth:`Pipeline.advance` steps through.
MAX_TICKS = 1_000


class NotIdle(AssertionError):
    """Raised when a pipeline still has work after its timeout: ``pending`` says where."""

    def __init__(self, timeout_s: float, left: list[Pending], processing: list[str]) -> None:
        self.pending = left
        shown = [f"  {p}" for p in left] + [f"  being processed: {m}" for m in processing]
        lines = "\n".join(shown) or "  (a message between two places)"
        super().__init__(f"pipeline not idle after {timeout_s:g}s; still pending:\n{lines}")


class Pipeline(Happened):
    """The app of ``broker`` (a RedisBroker carrying ``Completion``) run in-process.

    ``rules``: None (the ``@on_done`` rules of the broker's actors), a config file, a
    ``Config`` (merged with the ``@on_done`` rules) or a ``RuleSet``. ``inline``: route
    in the worker (True) or with an in-process router (False). ``queues``: the queues
    the worker consumes (None: all). Use as a context manager, or ``start()``/``close()``.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        rules: str | Path | Config | RuleSet | None = None,
        inline: bool = True,
        queues: set[str] | None = None,
        worker_threads: int = 2,
    ) -> None:
        completions = [m for m in broker.middleware if isinstance(m, Completion)]
        if not completions:
            raise ConfigError("Pipeline: the broker carries no Completion middleware")
        client = broker_client(broker)
        if not isinstance(client, redis.Redis):
            raise ConfigError("Pipeline: the broker is no RedisBroker on one server")
        self.broker, self.client, self.completion = broker, client, completions[0]
        self.namespace = broker_namespace(broker)
        self.inline, self.queues, self.worker_threads = inline, queues, worker_threads
        self.ruleset = routed_ruleset(rules, broker)
        self.recorder = Recorder()
        #: The time delays, schedules and join deadlines run on; see :meth:`advance`.
        self.clock = TestClock()
        self.router: Router | None = None
        if self.ruleset is not None and self.ruleset.watchers:
            options = RouterOptions(namespace=self.namespace, block_s=0.05, trace=_traced(broker))
            self.router = Router(ruleset=self.ruleset, client=client, options=options)
            if self.router.scheduler is not None:
                self.router.scheduler.clock = self.clock.now
        self._rules: Any = None
        self._worker: dramatiq.Worker | None = None
        self._saved: tuple[Any, bool] | None = None
        self._clock_installed: contextlib.ExitStack | None = None

    def start(self) -> Pipeline:
        """Set Completion's routing, add the recorder, start the worker."""
        if self._worker is not None:
            return self
        c = self.completion
        self._saved = (c.rules, c.route_inline)
        c.rules = self.ruleset if self.inline else None
        c.route_inline = self.inline and self.ruleset is not None
        has_retries = any(isinstance(m, Retries) for m in self.broker.middleware)
        self.broker.add_middleware(self.recorder, before=Retries if has_retries else None)
        self._clock_installed = contextlib.ExitStack()
        self._clock_installed.enter_context(self.clock.installed())
        self._worker = dramatiq.Worker(
            self.broker, queues=self.queues, worker_threads=self.worker_threads, worker_timeout=20
        )
        try:
            self._worker.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the worker, take the recorder off, put Completion's routing back."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            # the worker's own middleware stays on the broker after its stop: taken off,
            # so that the next pipeline's worker is the only one to get its queues
            self.broker.middleware[:] = [
                m for m in self.broker.middleware if getattr(m, "worker", None) is not worker
            ]
        if self.recorder in self.broker.middleware:
            self.broker.middleware.remove(self.recorder)
        if self._saved is not None:
            self.completion.rules, self.completion.route_inline = self._saved
            self._saved = None
        installed, self._clock_installed = self._clock_installed, None
        if installed is not None:
            installed.close()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_until_idle(self, timeout_s: float = 5.0) -> float:
        """Run until nothing is pending; return the seconds it took. Raise
        :class:`NotIdle` (an ``AssertionError``) after ``timeout_s``. A message delayed (a
        ``delay``, a retry's backoff) until after the timeout, with as much again to spare
        (twice ``timeout_s`` from now on the pipeline's clock), is left waiting for
        :meth:`advance`, as are schedule ticks and join deadlines to come; the clock
        never jumps here: sooner delays are waited for."""
        self.start()
        began = time.monotonic()
        horizon_ms = self.clock.millis() + round(2 * timeout_s * 1000)
        quiet = 0
        while True:
            routed = self._route()
            found = self._pending(horizon_ms, reads=1)  # one read: a move is seen next round
            left = [p for p in found if not p.later]
            # twice quiet in a row: a message between two of our reads is seen
            quiet = quiet + 1 if not routed and not left and not self.recorder.busy else 0
            if quiet >= 2:
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                found = self.pending(horizon_ms)  # read again while a message moves
                left = [p for p in found if not p.later]
                waiting = [p for p in found if p.later]
                raise NotIdle(timeout_s, left + waiting, self.recorder.processing)
            time.sleep(POLL_S)

    def push(self, event: str, *, watcher: str | None = None) -> None:
        """Put ``event`` on a watcher's input list (the first watcher's when not named),
        as a producer outside the app would; the next run routes it."""
        self.client.lpush(self._watcher(watcher), event)

    def advance(self, seconds: float, *, timeout_s: float = 5.0) -> None:
        """Move the clock ``seconds`` forward as if that time had passed: through each
        schedule tick in between (at most :data:`MAX_TICKS`), running until idle at
        each, then to the end, running until idle. Delayed messages and join deadlines
        come due on the way; each run may raise :class:`NotIdle`."""
        if not seconds >= 0:
            raise ValueError(f"Pipeline.advance: {seconds!r} is not a number of seconds >= 0")
        self.start()
        end = self.clock.now() + seconds
        for tick in self._ticks(int(self.clock.now()), int(end)):
            self._move_clock(tick)
            self.run_until_idle(timeout_s)
        self._move_clock(end)
        self.run_until_idle(timeout_s)

    def _move_clock(self, to: float) -> None:
        """The clock to ``to`` (or just past it), the join deadlines as far back."""
        step_ms = self.clock.advance(max(0.0, to - self.clock.now()))
        if step_ms and self.ruleset is not None:
            keys = [JoinKeys.of(w.input_queue) for w in self.ruleset.config.spec.watchers]
            shift_deadlines(self.client, keys, step_ms)

    def _ticks(self, after: int, until: int) -> list[int]:
        """The schedule ticks later than ``after``, at or before ``until``, in order."""
        scheduler = self.router.scheduler if self.router is not None else None
        if scheduler is None:
            return []
        found: set[int] = set()
        for schedule in scheduler.schedules:
            for tick in between(schedule.ticks, after, until):
                found.add(tick)
                if len(found) > MAX_TICKS:
                    raise ValueError(
                        f"Pipeline.advance: more than {MAX_TICKS} schedule ticks in "
                        f"{until - after} s (schedule {schedule.name!r}); advance in "
                        "smaller steps"
                    )
        return sorted(found)

    def _route(self) -> int:
        """One pass of the in-process router (due ticks, deadlines, input lists)."""
        if self.router is None:
            return 0
        return self.router.run_until_idle()

    def pending(self, horizon_ms: int | None = None) -> list[Pending]:
        """What is still queued, delayed, in flight or waiting to be routed; a delay
        queue whose messages are all due after ``horizon_ms`` (the clock's ms; default:
        now) is marked ``later``. Read again when a message moved between two reads
        (a worker taking a delayed message from its delay queue)."""
        return self._pending(horizon_ms)

    def _pending(self, horizon_ms: int | None, reads: int = READS) -> list[Pending]:
        watchers = self.ruleset.config.spec.watchers if self.ruleset is not None else ()
        return pending(
            self.client, self.namespace, watchers,
            now_ms=self.clock.millis(), horizon_ms=horizon_ms, reads=reads,
        )  # fmt: skip


def _traced(broker: Broker) -> bool:
    """True when the broker carries the tracing middleware (then the in-process router
    records its commit spans too)."""
    return any(type(m).__module__.startswith("resc_dramatiq.tracing") for m in broker.middleware)

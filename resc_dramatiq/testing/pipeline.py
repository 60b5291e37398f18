"""``Pipeline``: run an app's actors and its rules in-process until nothing is left.

A real ``dramatiq.Worker`` (few threads) runs the broker's actors; done events are
routed either in the worker (``inline=True``: ``Completion`` routes them) or by an
in-process :class:`~resc_dramatiq.router.router.Router` driven on its production loop
(``Router.run_until_idle``). :meth:`Pipeline.run_until_idle` repeats until every Dramatiq
queue, delay queue and acks set of the broker's namespace, every watcher's input and
taken lists are empty and no message is being processed (see :mod:`.pending`); after
``timeout_s`` it raises :class:`NotIdle`, an ``AssertionError`` listing what is pending
where.
"""

from __future__ import annotations

import inspect
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
from ..ops.dead import DeadLetter, list_dead
from ..ops.dramatiq_dead import DeadMessage, list_dead_messages
from ..router.options import RouterOptions
from ..router.router import Router
from ..rules.ruleset import RuleSet
from ..store.keyspace import counters
from ..worker.completion import Completion
from .made import ruleset_of
from .pending import Pending, pending
from .recorder import Recorder, Run

#: The totals of a watcher's counters, 0 when never written.
TOTALS = ("events", "queued", "deduplicated", "unmatched", "retried", "dead")
#: How long a round waits before looking again, in seconds.
POLL_S = 0.005


class NotIdle(AssertionError):
    """Raised when a pipeline still has work after its timeout: ``pending`` says where."""

    def __init__(self, timeout_s: float, left: list[Pending], processing: list[str]) -> None:
        self.pending = left
        shown = [f"  {p}" for p in left] + [f"  being processed: {m}" for m in processing]
        lines = "\n".join(shown) or "  (a message between two places)"
        super().__init__(f"pipeline not idle after {timeout_s:g}s; still pending:\n{lines}")


class Pipeline:
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
        self.ruleset = _ruleset(rules, broker)
        self.recorder = Recorder()
        self.router: Router | None = None
        if not inline and self.ruleset is not None:
            options = RouterOptions(namespace=self.namespace, block_s=0.05, trace=_traced(broker))
            self.router = Router(ruleset=self.ruleset, client=client, options=options)
        self._rules: Any = None
        self._worker: dramatiq.Worker | None = None
        self._saved: tuple[Any, bool] | None = None

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
        if self.recorder in self.broker.middleware:
            self.broker.middleware.remove(self.recorder)
        if self._saved is not None:
            self.completion.rules, self.completion.route_inline = self._saved
            self._saved = None

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_until_idle(self, timeout_s: float = 5.0) -> float:
        """Run until nothing is pending; return the seconds it took. Raise
        :class:`NotIdle` (an ``AssertionError``) after ``timeout_s``."""
        self.start()
        began = time.monotonic()
        quiet = 0
        while True:
            routed = self.router.run_until_idle() if self.router is not None else 0
            left = self.pending()
            # twice quiet in a row: a message between two of our reads is seen
            quiet = quiet + 1 if not routed and not left and not self.recorder.busy else 0
            if quiet >= 2:
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                for _ in range(3):  # a message acked between the look and its payload's
                    if not any(f.startswith("message ") for p in left for f in p.first):
                        break
                    left = self.pending()
                raise NotIdle(timeout_s, left, self.recorder.processing)
            time.sleep(POLL_S)

    def pending(self) -> list[Pending]:
        """What is still queued, delayed, in flight or waiting to be routed."""
        watchers = self.ruleset.config.spec.watchers if self.ruleset is not None else ()
        return pending(self.client, self.namespace, watchers)

    # -- what happened --------------------------------------------------------------

    def runs(self, actor: str | None = None, *, outcome: str | None = None) -> list[Run]:
        """The runs recorded (of ``actor``, with ``outcome``), in the order they ended."""
        return [
            r
            for r in self.recorder.runs
            if (actor is None or r.actor == actor) and (outcome is None or r.outcome == outcome)
        ]

    def calls(self, actor: str) -> list[dict[str, Any]]:
        """The arguments of each successful run of ``actor`` by parameter name (however
        the message passed them: a rule-made message passes keywords), sorted."""
        signature = inspect.signature(self.broker.get_actor(actor).fn)
        bound = [
            dict(signature.bind(*r.args, **r.kwargs).arguments)
            for r in self.runs(actor, outcome="done")
        ]
        return sorted(bound, key=repr)

    def counts(self) -> dict[str, int]:
        """Successful runs per actor."""
        out: dict[str, int] = {}
        for r in self.runs(outcome="done"):
            out[r.actor] = out.get(r.actor, 0) + 1
        return out

    def tasks(self) -> list[str]:
        """The task strings of the rule-made messages that ran successfully, sorted."""
        return sorted(r.task for r in self.runs(outcome="done") if r.task is not None)

    def stats(self, watcher: str | None = None) -> dict[str, int]:
        """The totals of a watcher (the first one when not named): ``events``,
        ``queued``, ``deduplicated``, ``unmatched``, ``retried``, ``dead`` (0 when never
        written) and the per-rule ``<rule>|matched``... counters (docs/status.md)."""
        found = counters(self.client, f"{self._watcher(watcher)}/stats")
        return dict.fromkeys(TOTALS, 0) | found

    def dead_letters(self, watcher: str | None = None) -> list[DeadLetter]:
        """The events a watcher dead-lettered (with rule, error, attempts), newest first."""
        if self.ruleset is None:
            return []
        found: list[DeadLetter] = []
        for spec in self.ruleset.config.spec.watchers:
            if watcher is None or spec.input_queue == watcher:
                found += list_dead(self.client, spec, limit=10_000).letters
        return found

    def dead_messages(self, queue: str | None = None) -> list[DeadMessage]:
        """Dramatiq's dead-lettered messages (``<ns>:<q>.XQ``) of the broker's queues."""
        queues = sorted({a.queue_name for a in self.broker.actors.values()})
        found: list[DeadMessage] = []
        for q in queues if queue is None else [queue]:
            found += list_dead_messages(self.client, self.namespace, q, limit=10_000).messages
        return found

    def _watcher(self, watcher: str | None) -> str:
        if watcher is not None:
            return watcher
        if self.ruleset is None or not self.ruleset.config.spec.watchers:
            raise ConfigError("Pipeline: no rules, so no watcher")
        return self.ruleset.config.spec.watchers[0].input_queue


def _ruleset(rules: str | Path | Config | RuleSet | None, broker: Broker) -> RuleSet | None:
    """The rules routed: given ones merged with the ``@on_done`` ones; None when
    neither a file nor the app has any (done events are then only written)."""
    if rules is None:
        try:
            return ruleset_of(broker)
        except ConfigError as e:
            if any("no @on_done rules" in p for p in e.problems):
                return None
            raise
    return ruleset_of(rules, broker)


def _traced(broker: Broker) -> bool:
    """True when the broker carries the tracing middleware (then the in-process router
    records its commit spans too)."""
    return any(type(m).__module__.startswith("resc_dramatiq.tracing") for m in broker.middleware)

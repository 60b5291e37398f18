"""What a test's pipeline did, read like the domain: runs, arguments, counters, dead
letters. :class:`~.pipeline.Pipeline` inherits these readers."""

from __future__ import annotations

import inspect
from typing import Any

import redis
from dramatiq import Broker

from ..errors import ConfigError
from ..ops.dead import DeadLetter, list_dead
from ..ops.dramatiq_dead import DeadMessage, list_dead_messages
from ..rules.ruleset import RuleSet
from ..store.keyspace import counters
from .recorder import Recorder, Run

#: The totals of a watcher's counters, 0 when never written.
TOTALS = ("events", "queued", "deduplicated", "unmatched", "retried", "dead", "leaf")


class Happened:
    """The readers of what a pipeline's runs and rules did."""

    broker: Broker
    client: redis.Redis
    namespace: str
    ruleset: RuleSet | None
    recorder: Recorder

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

"""Routing done events inside the worker: the router's planner and commit, per message.

When a message ends, its done event is planned by the watcher's
:class:`~resc_dramatiq.rules.plan.Planner` (the router's own) and committed by
``commit.lua`` in mode ``message`` through the watcher's store: the event's tasks, its
dedup release and the message's marker are written in one atomic step. A retry after a
lost reply, or the same message redelivered after its worker was killed between the
commit and the ack, finds the marker and writes nothing: follow-up tasks are queued
exactly once, also for targets without a dedup set.

Events of a list no watcher reads, and events a rule with fetchers matches (fetchers
need the router's HTTP client), are not routed here: the caller pushes them as plain
done events for the router.

On a Redis Cluster (``cluster``: ``scripts`` are on a ``RedisCluster`` client), the
commit runs in the watcher's slot and the event's tasks in other slots go through the
watcher's outbox (see :mod:`resc_dramatiq.store.outbox`), finished by the worker at
once, or by a router's sweep if the worker dies first.
"""

from __future__ import annotations

from ..rules.plan import Planner
from ..rules.ruleset import RuleSet
from ..store.commit import MARKER_TTL_MS, CommitResult, DoneMessage
from ..store.resilience import ReplicaWait
from ..store.scripts import Scripts
from ..store.store import WatcherStore

#: The instance name of inline commits (they use no taken list).
INLINE_INSTANCE = "inline"


class InlineRouter:
    """The watchers of a rule set, ready to commit one done event per message."""

    def __init__(
        self,
        *,
        ruleset: RuleSet,
        scripts: Scripts,
        namespace: str,
        marker_ttl_ms: int = MARKER_TTL_MS,
        cluster: bool = False,
        wait: ReplicaWait | None = None,
    ) -> None:
        self.ruleset = ruleset
        self._watchers: dict[str, tuple[Planner, WatcherStore]] = {}
        for rules in ruleset.watchers:
            store = WatcherStore.of(
                scripts,
                ruleset,
                rules,
                instance=INLINE_INSTANCE,
                namespace=namespace,
                marker_ttl_ms=marker_ttl_ms,
                cluster=scripts if cluster else None,
                wait=wait,
            )
            self._watchers[rules.spec.input_queue] = (Planner(rules), store)

    def routes(self, finished: DoneMessage) -> bool:
        """True when ``finished``'s event is routed here (a watcher reads its done list,
        and no rule with fetchers matches it)."""
        found = self._watchers.get(finished.done_queue)
        return found is not None and not found[0].needs_fetch(finished.event)

    def commit(self, finished: DoneMessage) -> CommitResult:
        """Plan and commit the event; ``repeated`` when this message's commit was made before.

        Raises :class:`~resc_dramatiq.errors.WrongType` (nothing written) when a key
        holds another type.
        """
        planner, store = self._watchers[finished.done_queue]
        batch = planner.plan([finished.event.encode()])
        return store.commit_message(batch, finished)

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

:class:`InlineRouting` is what ``Completion`` holds: which rules, compiled when (at the
worker's boot, and again for the next message after :attr:`InlineRouting.rules` is
assigned), and the retried commit of one :class:`~resc_dramatiq.store.commit.DoneMessage`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal

from dramatiq import Broker

from ..compat import broker_namespace
from ..config.model import Config
from ..errors import ConfigError, RescError
from ..rules.plan import Planner
from ..rules.ruleset import RuleSet
from ..store.commit import MARKER_TTL_MS, CommitResult, DoneMessage
from ..store.connect import is_cluster
from ..store.joins import Deadlines
from ..store.resilience import Replication, ReplicaWait
from ..store.scripts import Scripts
from ..store.store import WatcherStore
from .app import App, build_ruleset
from .retrying import Retrying

#: What ``rules=`` accepts: a config file's path, a loaded config, or compiled rules.
Rules = str | Path | Config | RuleSet

#: The instance name of inline commits (they use no taken list).
INLINE_INSTANCE = "inline"

#: How a worker handles a done event (:meth:`InlineRouter.handling`).
Handling = Literal["commit", "leaf", "router"]


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
        replication: Replication | None = None,
    ) -> None:
        self.ruleset = ruleset
        self._watchers: dict[str, tuple[Planner, WatcherStore]] = {}
        #: The join deadlines of the watchers whose join rules have one.
        self.deadlines: list[Deadlines] = []
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
                replication=replication,
            )
            planner = Planner(rules)
            self._watchers[rules.spec.input_queue] = (planner, store)
            if Deadlines.needed(planner):
                settings = store.settings
                self.deadlines.append(
                    Deadlines(
                        scripts=scripts,
                        spec=rules.spec,
                        planner=planner,
                        dramatiq=settings.dramatiq,
                        channel=settings.channel,
                    )
                )

    def handling(self, finished: DoneMessage) -> Handling:
        """How ``finished``'s event is handled, its rules matched once: ``"router"`` when
        no watcher here reads its done list or a rule with fetchers matches it (fetchers
        need the router's HTTP client); ``"leaf"`` when no rule matches it and its
        watcher keeps no unmatched list nor lineage (whose ``why`` reads the message's
        marker to say it is done): committing it would only count it; else ``"commit"``."""
        found = self._watchers.get(finished.done_queue)
        if found is None:
            return "router"
        planner = found[0]
        matches = planner.matching(finished.event)
        if any(m.rule.fetch for m in matches):
            return "router"
        spec = planner.rules.spec
        if not matches and not spec.unmatched_queue and spec.kept_lineage is None:
            return "leaf"
        return "commit"

    def commit(self, finished: DoneMessage) -> CommitResult:
        """Plan and commit the event; ``repeated`` when this message's commit was made before.

        Raises :class:`~resc_dramatiq.errors.WrongType` (nothing written) when a key
        holds another type.
        """
        planner, store = self._watchers[finished.done_queue]
        envelopes = finished.envelope is not None
        read = (finished.event, finished.payload) if finished.payload is not None else None
        batch = planner.plan(
            [finished.element], envelopes=envelopes, cause=finished.cause, read=read
        )
        return store.commit_message(batch, finished)


class InlineRouting:
    """In-worker routing of done events: the rules, compiled lazily, and the commit of one
    done event, retried through ``retrying``.

    ``rules`` (a config path, a ``Config`` or a ``RuleSet``) are merged with the app's
    ``@on_done`` rules when a file or a ``Config``; ``enabled`` without rules routes with
    the ``@on_done`` rules alone. Nothing is routed before :meth:`boot`.
    """

    def __init__(
        self,
        *,
        rules: Rules | None,
        enabled: bool,
        retrying: Retrying,
        logger: logging.Logger,
        marker_ttl_ms: int = MARKER_TTL_MS,
        wait: ReplicaWait | None = None,
        replication: Replication | None = None,
    ) -> None:
        self.enabled = enabled or rules is not None
        self.retrying = retrying
        self.logger = logger
        self.marker_ttl_ms = marker_ttl_ms
        self.wait, self.replication = wait, replication
        self._rules = rules
        self._router: InlineRouter | None = None
        self._where: tuple[Broker, Scripts] | None = None
        self._lock = threading.Lock()

    @property
    def rules(self) -> Rules | None:
        """The rules routed inline (None: the ``@on_done`` rules, or no inline routing)."""
        return self._rules

    @rules.setter
    def rules(self, rules: Rules | None) -> None:
        with self._lock:
            self._rules, self._router = rules, None
            self.enabled = self.enabled or rules is not None

    def boot(self, *, broker: Broker, scripts: Scripts) -> None:
        """Route ``broker``'s done events through ``scripts``; compile the rules now when
        enabled (raises :class:`~resc_dramatiq.errors.ConfigError`)."""
        with self._lock:
            self._where = broker, scripts
        if self.enabled:
            self._compiled()

    @property
    def watched(self) -> tuple[str, ...]:
        """The done lists the compiled rules route (empty before they compile)."""
        router = self._router
        return () if router is None else tuple(w.spec.input_queue for w in router.ruleset.watchers)

    def route(self, finished: DoneMessage) -> Handling:
        """Commit ``finished``'s event here: ``"commit"`` when done (nothing more to
        write); ``"leaf"`` when it feeds nothing (nothing written: see :mod:`.leaves`).

        ``"router"`` leaves the event to its list, for the router: no routing, no watcher
        of its list, a rule with fetchers, rules assigned since the boot that do not
        compile (said at ERROR), a commit refused (a key of the wrong type, said at ERROR)
        or lost (logged as ``LOST:`` by ``retrying``).
        """
        router = self._router_or_none() if self.enabled else None
        how: Handling = "router" if router is None else router.handling(finished)
        if router is None or how != "commit":
            return how
        what = f"inline routing of {finished.event!r}"
        try:
            committed = self.retrying.run(what, lambda: router.commit(finished))
        except RescError as e:  # refused (a key of the wrong type): nothing was written
            self.logger.error("%s refused: %s; handing the event to the router", what, e)
            return "router"
        if committed is not None and committed.repeated:
            self.logger.info("message %s was routed before; nothing written", finished.message_id)
        return "commit" if committed is not None else "router"

    def deadlines(self) -> list[Deadlines]:
        """The join deadlines of the compiled rules (none before they compile)."""
        router = self._router
        return [] if router is None else router.deadlines

    def _router_or_none(self) -> InlineRouter | None:
        try:
            return self._compiled()
        except ConfigError as e:
            self.logger.error("The inline rules do not compile (%s); the router gets the event", e)
            return None

    def _compiled(self) -> InlineRouter | None:
        """The inline router, compiled once per rule set (raises ConfigError); None
        before :meth:`boot`."""
        with self._lock:
            if self._router is None and self._where is not None:
                broker, scripts = self._where
                self._router = InlineRouter(
                    ruleset=self._compile(broker),
                    scripts=scripts,
                    cluster=is_cluster(scripts.client),
                    wait=self.wait,
                    replication=self.replication,
                    namespace=broker_namespace(broker),
                    marker_ttl_ms=self.marker_ttl_ms,
                )
            return self._router

    def _compile(self, broker: Broker) -> RuleSet:
        if isinstance(self._rules, RuleSet):
            return self._rules
        config = Config.load(self._rules) if isinstance(self._rules, str | Path) else self._rules
        return build_ruleset(config, App.of_broker(broker))

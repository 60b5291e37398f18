"""``Completion``: done events, dedup release and in-worker routing for Dramatiq.

Add it to the broker **before** ``Retries`` (Dramatiq runs ``after_*`` hooks in reverse,
so Completion then sees the verdict Retries reached) and before the actor modules are
imported (it declares the actor options ``done_event``, ``done_queue`` and
``failed_queue``, which Dramatiq checks when ``@dramatiq.actor`` runs)::

    broker.add_middleware(Completion(), before=Retries)

For a rule-made message (message option ``resc``) and for an actor declaring
``done_event="acq/${process_id}/${product_id}"`` (``${name}`` fields filled from the
message's arguments, nothing evaluated):

* success (no exception, not ``message.failed``): the task string is pushed onto the
  done list in ``after_process_message``, before the ack;
* failure for good (``message.failed``): the task string goes to the failure list;
* dedup release: ``ZREM`` from the task's set when the worker takes the message
  (``release="taken"``, resc's habit) or with the done event (``release="done"``);
* with ``rules=`` (a config file, a :class:`~resc_dramatiq.config.model.Config` or a
  :class:`~resc_dramatiq.rules.ruleset.RuleSet`) or ``route_inline=True`` (the app's
  ``@on_done`` rules), done events are routed right in the worker (see
  :mod:`.inline`): the router's planner and commit script, one atomic step.

Every write is idempotent per Dramatiq message: a marker keyed by the message id,
written in the same atomic step, makes a retried write after a lost reply, or the
same message redelivered after a worker was killed between the write and the ack,
change nothing. The actor body itself runs at least once, as Dramatiq promises.
Redis errors are retried briefly with backoff; an event that still cannot be written is
logged at CRITICAL as a ``LOST:`` line naming it (Dramatiq would log an exception raised
from a hook and ack the message anyway). What cannot work at all (rules that do not
compile, no Redis client) stops the worker's boot instead (:class:`BootRefused`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from dramatiq import Actor, Broker, Middleware, Worker
from dramatiq.broker import MessageProxy
from dramatiq.logging import get_logger
from dramatiq.middleware import MiddlewareError
from redis.cluster import RedisCluster

from ..config.model import Config
from ..errors import ConfigError, RescError
from ..rules.ruleset import RuleSet
from ..store.commit import MARKER_TTL_MS
from ..store.connect import is_cluster
from ..store.keys import message_markers
from ..store.layout import check_at_boot
from ..store.resilience import Backoff, Replication, ReplicaWait, is_transient
from ..store.scripts import Scripts
from ..store.slots import key_slot
from ..store.store import emit
from .app import App, build_ruleset
from .done_event import DoneEvent
from .inline import InlineRouter
from .outcome import Outcome, outcome_of

DEFAULT_DONE_QUEUE = "global/done"

#: What ``rules=`` accepts: a config file's path, a loaded config, or compiled rules.
Rules = str | Path | Config | RuleSet

T = TypeVar("T")


class BootRefused(ConfigError, MiddlewareError):
    """Raised at a worker's boot when Completion cannot run as configured (rules that do
    not compile, no Redis client): the worker must not take a message."""


class Completion(Middleware):
    """Emits done and failure events, releases dedup entries, optionally routes inline.

    ``client`` defaults to the broker's Redis client. ``rules`` (a config path, a
    ``Config`` or a ``RuleSet``) turns on in-worker routing of the done events whose
    list one of its watchers reads, merged with the app's ``@on_done`` rules when it is
    a file or a ``Config``; ``route_inline=True`` alone routes with the ``@on_done``
    rules. The rules are compiled once, against the broker's actors, when the worker
    boots (rules that do not compile stop the boot); assigning :attr:`rules` later takes
    effect for the next message (rules that do not compile then leave the events to the
    router).
    ``done_queue`` is the done list of actors declaring ``done_event`` without
    ``done_queue``; ``failed_queue`` the failure list (default ``<done list>/failed``);
    ``marker_ttl_s`` how long a message's marker is kept (longer than any redelivery).
    ``wait_replicas`` makes each done or failure event wait (``WAIT``, at most
    ``wait_timeout_ms``) for that many replicas before the message is acknowledged, so a
    failover cannot lose an event whose message Dramatiq considers done (see
    docs/high-availability.md); fewer acks are logged once, and the worker goes on.
    """

    def __init__(
        self,
        *,
        client: redis.Redis | None = None,
        rules: Rules | None = None,
        route_inline: bool = False,
        done_queue: str = DEFAULT_DONE_QUEUE,
        failed_queue: str | None = None,
        attempts: int = 16,  # ~12 s of capped backoff: long enough for a failover
        marker_ttl_s: float = MARKER_TTL_MS / 1000,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.logger = get_logger(__name__, type(self))  # type: ignore[no-untyped-call]
        self.client = client
        self.route_inline = route_inline or rules is not None
        self.done_queue = done_queue
        self.failed_queue = failed_queue
        self.attempts = attempts
        self.marker_ttl_ms = int(marker_ttl_s * 1000)
        self.wait = ReplicaWait.of(wait_replicas, wait_timeout_ms)
        self.replication = (
            None if self.wait is None else Replication(self.logger, "done events", self.wait)
        )
        self._rules = rules
        self._inline: InlineRouter | None = None
        self._scripts: Scripts | None = None
        self._lock = threading.Lock()
        self._never = threading.Event()
        self._templates: dict[str, DoneEvent] = {}

    @property
    def actor_options(self) -> set[str]:
        """Per-actor options: ``done_event``, ``done_queue``, ``failed_queue``."""
        return {"done_event", "done_queue", "failed_queue"}

    @property
    def rules(self) -> Rules | None:
        """The rules routed inline (None: the ``@on_done`` rules, or no inline routing)."""
        return self._rules

    @rules.setter
    def rules(self, rules: Rules | None) -> None:
        with self._lock:
            self._rules, self._inline = rules, None
            self.route_inline = self.route_inline or rules is not None

    def before_declare_actor(self, broker: Broker, actor: Actor[Any, Any]) -> None:
        """Compile ``done_event`` when the actor is declared: bad templates fail at import."""
        source = actor.options.get("done_event")
        if source is not None:
            where = f"actor {actor.actor_name!r} done_event"
            self._templates[actor.actor_name] = DoneEvent.compile(source, where=where, fn=actor.fn)

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Find the Redis client and compile the inline rules before any thread takes a
        message: what does not load stops the boot (:class:`BootRefused`), never a
        message. Dramatiq lets a ``MiddlewareError`` of a ``before_`` hook through
        (``Worker.start`` raises it; the ``dramatiq`` command's worker process dies of it,
        and the command exits non-zero); in ``after_worker_boot`` it would be swallowed."""
        try:
            self._scripts_of(broker)
            check_at_boot(self._client(broker), "worker", self.logger)  # LayoutRefused
            if self.route_inline:
                self._inline_router(broker)
        except RescError as e:
            self.logger.critical("Worker boot refused: %s", e)
            raise BootRefused(f"Completion: {e}") from None

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """Release ``release="taken"`` dedup entries as the worker takes the message."""
        o = self._outcome(broker, message)
        if o is not None and o.set and o.release == "taken":
            dedup, task = o.set, o.task
            self._write(
                broker, f"release of {task!r} from {dedup!r}", lambda c: c.zrem(dedup, task)
            )

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Emit the done event on success, the failure event when failed for good."""
        if message.failed:
            self._settle(broker, message, "failure event", self._failed)
        elif exception is None:
            self._settle(broker, message, "done event", self._done)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        """A message failed before running (e.g. ``AgeLimit``) is a failure too."""
        if message.failed:
            self._settle(broker, message, "failure event", self._failed)

    def _settle(
        self,
        broker: Broker,
        message: MessageProxy,
        what: str,
        write: Callable[[Broker, Outcome], None],
    ) -> None:
        """Write ``message``'s event with ``write``; whatever goes wrong is logged as a
        loss, with the event (Dramatiq would log an exception of a hook and ack anyway)."""
        o: Outcome | None = None
        try:
            o = self._outcome(broker, message)
            if o is not None:
                write(broker, o)
        except Exception as e:
            event = f"{o.task!r}" if o is not None else f"of {message.actor_name}"
            self.logger.critical(
                "LOST: %s %s of message %s: %s: %s",
                what, event, message.message_id, type(e).__name__, e, exc_info=True,
            )  # fmt: skip

    def _outcome(self, broker: Broker, message: MessageProxy) -> Outcome | None:
        return outcome_of(
            broker,
            message,
            self._templates,
            done_queue=self.done_queue,
            failed_queue=self.failed_queue,
            logger=self.logger,
        )

    def _failed(self, broker: Broker, o: Outcome) -> None:
        self._emit(broker, o, o.failed, "failure event")

    def _done(self, broker: Broker, o: Outcome) -> None:
        inline = self._inline_or_none(broker) if self.route_inline else None
        finished = o.finished()
        if inline is not None and inline.routes(finished):
            what = f"inline routing of {o.task!r}"
            try:
                committed = self._write(broker, what, lambda c: inline.commit(finished))
            except RescError as e:  # refused (a key of the wrong type): nothing was written
                self.logger.error("%s refused: %s; handing the event to the router", what, e)
            else:
                if committed is not None and committed.repeated:
                    self.logger.info("message %s was routed before; nothing written", o.message_id)
                if committed is not None:
                    return
        self._emit(broker, o, o.done, "done event")

    def _emit(self, broker: Broker, o: Outcome, queue: str, what: str) -> None:
        """Push ``o``'s event onto ``queue`` once per message (released with it if due).

        On a Redis Cluster, a dedup set in another slot than the list is released just
        before, on its own (one script may touch one slot only).
        """
        scripts = self._scripts_of(broker)
        markers = message_markers(queue)
        released = o.set if o.release == "done" else None
        if is_cluster(scripts.client):
            if key_slot(markers) != key_slot(queue):
                self.logger.critical(
                    "LOST: %s %r for %r: on a Redis Cluster the list needs a hash tag "
                    "(e.g. %r), so that its markers share its slot",
                    what, o.task, queue, "{" + queue + "}",
                )  # fmt: skip
                return
            if released is not None and key_slot(released) != key_slot(markers):
                task, dedup = o.task, released
                self._write(
                    broker, f"release of {task!r} from {dedup!r}", lambda c: c.zrem(dedup, task)
                )
                released = None

        def write(client: redis.Redis) -> bool:
            return emit(
                scripts,
                markers=markers,
                queue=queue,
                event=o.task,
                message_id=o.message_id,
                release_set=released,
                marker_ttl_ms=self.marker_ttl_ms,
                wait=self.wait,
                replication=self.replication,
            )

        try:
            self._write(broker, f"{what} {o.task!r} for {queue!r}", write)
        except RescError as e:
            self.logger.critical("LOST: %s %r for %r: %s", what, o.task, queue, e)

    def _inline_or_none(self, broker: Broker) -> InlineRouter | None:
        """The inline router; None (said at ERROR) when rules assigned since the boot do
        not compile: the event then goes to its list, for the router."""
        try:
            return self._inline_router(broker)
        except ConfigError as e:
            self.logger.error("The inline rules do not compile (%s); the router gets the event", e)
            return None

    def _inline_router(self, broker: Broker) -> InlineRouter:
        """The inline router, compiled once per rule set (raises ConfigError); it writes
        through the same scripts as the done events."""
        scripts = self._scripts_of(broker)  # takes the lock itself
        with self._lock:
            if self._inline is None:
                ruleset = self._compile(broker)
                self._inline = InlineRouter(
                    ruleset=ruleset,
                    scripts=scripts,
                    cluster=is_cluster(scripts.client),
                    wait=self.wait,
                    namespace=getattr(broker, "namespace", "dramatiq"),
                    marker_ttl_ms=self.marker_ttl_ms,
                )
            return self._inline

    def _compile(self, broker: Broker) -> RuleSet:
        if isinstance(self._rules, RuleSet):
            return self._rules
        config = Config.load(self._rules) if isinstance(self._rules, str | Path) else self._rules
        return build_ruleset(config, App.of_broker(broker))

    def _scripts_of(self, broker: Broker) -> Scripts:
        with self._lock:
            if self._scripts is None:
                self._scripts = Scripts(self._client(broker))
            return self._scripts

    def _client(self, broker: Broker) -> redis.Redis:
        client = self.client or getattr(broker, "client", None)
        if not isinstance(client, redis.Redis | RedisCluster):
            raise ConfigError("Completion needs client= when the broker is not a RedisBroker")
        return client  # type: ignore[return-value]  # a RedisCluster serves the same calls

    def _write(self, broker: Broker, what: str, write: Callable[[redis.Redis], T]) -> T | None:
        """Run ``write``; retry transient errors; log a loss loudly and return None.

        Every write here is idempotent (a ZREM, or a script guarded by the message's
        marker), so a retry after a lost reply is safe.
        """
        backoff = Backoff(first_s=0.05, cap_s=1.0)
        while True:
            try:
                return write(self._client(broker))
            except Exception as e:
                if not is_transient(e) or backoff.failures + 1 >= self.attempts:
                    if isinstance(e, RescError):
                        raise
                    self.logger.critical(
                        "LOST: %s failed after %d attempt(s): %s: %s",
                        what,
                        backoff.failures + 1,
                        type(e).__name__,
                        e,
                    )
                    return None
                backoff.wait(self._never)


def has_completion(broker: Broker) -> bool:
    """True when ``broker`` carries the Completion middleware (done events flow)."""
    return any(isinstance(m, Completion) for m in broker.middleware)

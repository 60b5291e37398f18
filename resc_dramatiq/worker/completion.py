"""``Completion``: done events, dedup release and in-worker routing for Dramatiq.

Add it to the broker **before** ``Retries`` (Dramatiq runs ``after_*`` hooks in reverse,
so Completion then sees the verdict Retries reached) and before the actor modules are
imported (it declares the actor options ``done_event``, ``done_queue`` and
``failed_queue``, which Dramatiq checks when ``@dramatiq.actor`` runs)::

    broker.add_middleware(Completion(), before=Retries)

For a rule-made message (message option ``resc``) and for an actor declaring
``done_event="acq/${process_id}/${product_id}"`` (``${name}`` fields filled from the
message's arguments, nothing evaluated; ``done_event=False`` marks a leaf actor, whose
successes write no done event):

* success (no exception, not ``message.failed``): the event is pushed onto the
  done list in ``after_process_message``, before the ack;
* failure for good (``message.failed``): the event goes to the failure list;
* dedup release: ``ZREM`` of the event from its set when the worker takes the message
  (``release="taken"``, resc's habit) or with the done event (``release="done"``);
* with ``rules=`` (a config file, a :class:`~resc_dramatiq.config.model.Config` or a
  :class:`~resc_dramatiq.rules.ruleset.RuleSet`) or ``route_inline=True`` (the app's
  ``@on_done`` rules), done events are routed right in the worker (see
  :mod:`.inline`): the router's planner and commit script, one atomic step.

Every write is idempotent per Dramatiq message: a marker keyed by the message id,
written in the same atomic step, makes a retried write after a lost reply, or the same
message redelivered after a worker was killed between the write and the ack, change
nothing. The actor body itself runs at least once, as Dramatiq promises. Redis errors
are retried briefly with backoff (:mod:`.retrying`); an event that still cannot be
written is logged at CRITICAL as a ``LOST:`` line naming it (Dramatiq would log an
exception raised from a hook and ack the message anyway). What cannot work at all (rules
that do not compile, no Redis client, on a Redis Cluster a done or failure list without
a hash tag: :mod:`.done_lists`) stops the worker's boot instead (:class:`BootRefused`).

Completion works out a message's outcome (:mod:`.outcome`) and hands it on: to
:class:`~.inline.InlineRouting` as one :class:`~resc_dramatiq.store.commit.DoneMessage`,
else to :class:`~.events.EventWriter`, which writes it onto its list.

A worker that routes inline fires the due join groups of its rules too (``deadlines``).

Over ~250 lines on purpose: Dramatiq's hooks live in one class; what they call is
elsewhere (``outcome``, ``events``, ``inline``, ``retrying``, ``done_lists``,
``deadlines``).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import redis
from dramatiq import Actor, Broker, Middleware, Worker
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.logging import get_logger
from dramatiq.middleware import MiddlewareError
from redis.cluster import RedisCluster

from ..compat import broker_client
from ..errors import ConfigError, RescError
from ..rules import data
from ..rules.messages import RESC_OPTION
from ..store.commit import MARKER_TTL_MS, DoneMessage
from ..store.connect import is_cluster
from ..store.layout import check_at_boot
from ..store.resilience import Replication, ReplicaWait
from ..store.scripts import Scripts
from ..store.slots import done_list_problems
from . import done_data
from .causes import with_cause
from .deadlines import DeadlineRounds
from .done_event import DoneEvent
from .done_lists import written_lists
from .events import EventWriter
from .inline import InlineRouting, Rules
from .leaves import LeafCounts
from .outcome import Outcome, outcome_of
from .retrying import DEFAULT_ATTEMPTS, Retrying

DEFAULT_DONE_QUEUE = "global/done"

#: Why a worker on a ``StubBroker`` is refused, and what to use instead.
STUB_REFUSED = (
    "Completion writes through Redis scripts: a StubBroker cannot run them; test with "
    "resc_dramatiq.testing (docs/testing.md)"
)


class BootRefused(ConfigError, MiddlewareError):
    """Raised at a worker's boot when Completion cannot run as configured (rules that do
    not compile, no Redis client, a list a cluster cannot serve): the worker must not take
    a message."""


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
    ``attempts`` the tries of a write riding through a Redis outage;
    ``marker_ttl_s`` how long a message's marker is kept (longer than any redelivery).
    ``wait_replicas`` makes each done or failure event, and each inline commit, wait
    (``WAIT``, at most ``wait_timeout_ms``) for that many replicas before the message is
    acknowledged, so a failover cannot lose an event whose message Dramatiq considers
    done (see
    docs/high-availability.md); fewer acks are logged once, and the worker goes on.
    On a Redis Cluster, every done and failure list the worker writes to needs a hash tag
    (see :mod:`.done_lists`); the boot is refused otherwise.
    ``lineage=True`` sends every done event with its message's cause (an envelope; see
    :mod:`.causes`): only where every watcher of the done lists reads envelopes.
    """

    def __init__(
        self,
        *,
        client: redis.Redis | None = None,
        rules: Rules | None = None,
        route_inline: bool = False,
        done_queue: str = DEFAULT_DONE_QUEUE,
        failed_queue: str | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        marker_ttl_s: float = MARKER_TTL_MS / 1000,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        data_limit: int = data.DEFAULT_LIMIT,
        lineage: bool = False,
    ) -> None:
        self.logger = get_logger(__name__, type(self))  # type: ignore[no-untyped-call]
        self.client = client
        self.done_queue = done_queue
        self.failed_queue = failed_queue
        self.marker_ttl_ms = int(marker_ttl_s * 1000)
        self.data_limit = data_limit
        self.lineage = lineage
        self.wait = ReplicaWait.of(wait_replicas, wait_timeout_ms)
        self.replication = (
            None if self.wait is None else Replication(self.logger, "done events", self.wait)
        )
        self.retrying = Retrying(logger=self.logger, attempts=attempts)
        self.inline = InlineRouting(
            rules=rules,
            enabled=route_inline,
            retrying=self.retrying,
            logger=self.logger,
            marker_ttl_ms=self.marker_ttl_ms,
            wait=self.wait,
            replication=self.replication,
        )
        self._events: EventWriter | None = None
        self._lock = threading.Lock()
        self._templates: dict[str, DoneEvent] = {}
        self._rounds: dict[Worker, DeadlineRounds] = {}
        self._leaves = LeafCounts(logger=self.logger)

    @property
    def actor_options(self) -> set[str]:
        """Per-actor options: ``done_event``, ``done_queue``, ``failed_queue``, ``done_data``."""
        return {"done_event", "done_queue", "failed_queue", "done_data"}

    @property
    def rules(self) -> Rules | None:
        """The rules routed inline (None: the ``@on_done`` rules, or no inline routing)."""
        return self.inline.rules

    @rules.setter
    def rules(self, rules: Rules | None) -> None:
        self.inline.rules = rules

    @property
    def route_inline(self) -> bool:
        """True when done events are routed in the worker."""
        return self.inline.enabled

    @route_inline.setter
    def route_inline(self, enabled: bool) -> None:
        self.inline.enabled = enabled

    def written_lists(self, broker: Broker) -> dict[str, str]:
        """The done and failure lists written to on ``broker``, known before a message:
        name -> where it is named (see :mod:`.done_lists`)."""
        done, failed, watched = self.done_queue, self.failed_queue, self.inline.watched
        return written_lists(broker, done_queue=done, failed_queue=failed, watched=watched)

    def before_declare_actor(self, broker: Broker, actor: Actor[Any, Any]) -> None:
        """Compile ``done_event`` when the actor is declared: bad templates fail at import."""
        if "done_data" in actor.options:
            where = f"actor {actor.actor_name!r}"
            done_data.check(actor.options["done_data"], where=where)
        source = actor.options.get("done_event")
        if source is not None and source is not False:
            where = f"actor {actor.actor_name!r} done_event"
            self._templates[actor.actor_name] = DoneEvent.compile(source, where=where, fn=actor.fn)

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Find the Redis client, compile the inline rules and, on a Redis Cluster, check
        the lists before any thread takes a message: what cannot work stops the boot
        (:class:`BootRefused`), never a message. Dramatiq lets a ``MiddlewareError`` of a
        ``before_`` hook through (``Worker.start`` raises it; the ``dramatiq`` command's
        worker process dies of it, and the command exits non-zero); in
        ``after_worker_boot`` it would be swallowed. A ``StubBroker`` is refused: the
        follow-ups would land in a Redis the stub never reads."""
        if isinstance(broker, StubBroker):
            self.logger.critical("Worker boot refused: %s", STUB_REFUSED)
            raise BootRefused(f"Completion: {STUB_REFUSED}")
        try:
            scripts = self._writer(broker).scripts
            check_at_boot(scripts.client, "worker", self.logger)  # LayoutRefused
            self.inline.boot(broker=broker, scripts=scripts)
            if is_cluster(scripts.client):
                problems = done_list_problems(self.written_lists(broker))
                if problems:
                    raise ConfigError(problems)
        except RescError as e:
            self.logger.critical("Worker boot refused: %s", e)
            raise BootRefused(f"Completion: {e}") from None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Fire the due groups of the inline rules' joins with deadlines (see
        :mod:`.deadlines`), when there are any."""
        deadlines = self.inline.deadlines()
        with self._lock:
            if deadlines and worker not in self._rounds:
                self._rounds[worker] = DeadlineRounds(deadlines, logger=self.logger).start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Stop this worker's deadline thread, if it runs one; write its leaf counts."""
        with self._lock:
            rounds = self._rounds.pop(worker, None)
            events = self._events
        if rounds is not None:
            rounds.stop()
        if events is not None:
            self._leaves.flush(events.scripts.client)

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """Release ``release="taken"`` dedup entries as the worker takes the message."""
        spec = message.options.get(RESC_OPTION)
        if not isinstance(spec, dict) or not spec.get("set"):
            return  # only a rule-made message has a dedup set: nothing to work out
        o = self._outcome(broker, message)
        if o is not None and o.set and o.release == "taken":
            self._writer(broker).release(o.set, o.event)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Emit the done event on success (with its payload when the actor declares
        ``done_data``), the failure event when failed for good."""
        if message.failed:
            self._settle(broker, message, failed=True)
        elif exception is None:
            self._settle(broker, message, failed=False, result=result)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        """A message failed before running (e.g. ``AgeLimit``) is a failure too."""
        if message.failed:
            self._settle(broker, message, failed=True)

    def _settle(
        self, broker: Broker, message: MessageProxy, *, failed: bool, result: Any = None
    ) -> None:
        """Emit ``message``'s done event (routed inline when it can be) or failure event;
        whatever goes wrong is logged as a loss, with the event (Dramatiq would log an
        exception of a hook and ack anyway). A payload that cannot be sent fails the
        message: its failure event is written instead."""
        what = "failure event" if failed else "done event"
        o: Outcome | None = None
        try:
            o = self._outcome(broker, message)
            if o is None:
                return
            writer = self._writer(broker)
            envelope = None if failed else self._envelope(broker, message, o, result)
            if envelope is False:
                failed, what = True, "failure event"
            if failed:
                writer.emit(o.failure(), what)
            elif not o.emits_done:  # a leaf actor: only a due release is written
                self._leaf(writer, o.finished())
            else:
                finished = o.finished()
                if isinstance(envelope, bytes):
                    finished = dataclasses.replace(finished, envelope=envelope)
                finished = with_cause(finished, message.options, always=self.lineage)
                finished = writer.apart(finished)  # what one script can write
                how = self.inline.route(finished)
                if how == "leaf":  # no rule matches it: as for a leaf actor
                    self._leaf(writer, finished)
                elif how == "router":
                    writer.emit(finished, what)
        except Exception as e:
            event = f"{o.event!r}" if o is not None else f"of {message.actor_name}"
            self.logger.critical(
                "LOST: %s %s of message %s: %s: %s",
                what, event, message.message_id, type(e).__name__, e, exc_info=True,
            )  # fmt: skip

    def _leaf(self, writer: EventWriter, finished: DoneMessage) -> None:
        """A done event not written (see :mod:`.leaves`): its due release (unless
        ``apart`` made it already), and counted."""
        if finished.release_set is not None:
            writer.release(finished.release_set, finished.event)
        self._leaves.add(writer.scripts.client, finished.done_queue)

    def _envelope(
        self, broker: Broker, message: MessageProxy, o: Outcome, result: Any
    ) -> bytes | bool | None:
        """The done event's envelope when the actor declares ``done_data`` (None: it
        does not); False when its payload cannot be sent: the message is failed, said at
        ERROR with the actor, the message and why."""
        actor = broker.actors.get(message.actor_name)
        option = actor.options.get("done_data") if actor is not None else None
        if option is None:
            return None
        try:
            return done_data.envelope(option, o.event, result, message, limit=self.data_limit)
        except Exception as e:  # NotJSON, or the callable's own error
            self.logger.error(
                "actor %r, message %s: its done_data cannot be sent (%s: %s); the message "
                "fails", message.actor_name, message.message_id, type(e).__name__, e,
            )  # fmt: skip
            message.fail()
            return False

    def _outcome(self, broker: Broker, message: MessageProxy) -> Outcome | None:
        done, failed, templates = self.done_queue, self.failed_queue, self._templates
        return outcome_of(
            broker, message, templates, done_queue=done, failed_queue=failed, logger=self.logger
        )

    def _writer(self, broker: Broker) -> EventWriter:
        with self._lock:
            if self._events is None:
                self._events = EventWriter(
                    scripts=Scripts(self._client(broker)),
                    retrying=self.retrying,
                    logger=self.logger,
                    marker_ttl_ms=self.marker_ttl_ms,
                    wait=self.wait,
                    replication=self.replication,
                )
            return self._events

    def _client(self, broker: Broker) -> redis.Redis | RedisCluster:
        client = self.client or broker_client(broker)
        if not isinstance(client, redis.Redis | RedisCluster):
            raise ConfigError("Completion needs client= when the broker is not a RedisBroker")
        return client


def has_completion(broker: Broker) -> bool:
    """True when ``broker`` carries the Completion middleware (done events flow)."""
    return any(isinstance(m, Completion) for m in broker.middleware)

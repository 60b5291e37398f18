"""``Tracing``: a Dramatiq middleware giving each message a consumer span in its chain's
trace (see the package's docstring and docs/tracing.md).

The parent of a message's span is, in order: the trace context of its cause
(``resc_cause.trace``: the span of the message whose done event made it), the
``traceparent`` option a sender's producer span put on it, or a stand-in derived from
its chain's root (:func:`~.context.stand_in`), so that every delivery of one message is
in one trace. A join's make links the spans of its group's members. The span is current
while the actor runs (its own spans nest under it) and its context goes, in memory, into
the message's ``resc_trace`` option, which ``Completion`` puts into the done event's
cause for the follow-ups.

Messaging semantic conventions, but for the span's name: ``process <actor>`` of kind
``CONSUMER`` (the actor, low in cardinality, says more than a queue many actors share),
with ``messaging.system`` ``dramatiq``, ``messaging.operation.type`` ``process``,
``messaging.destination.name`` (the queue), ``messaging.message.id``,
``messaging.dramatiq.actor``; the producer span of a message sent from code is
``send <actor>`` of kind ``PRODUCER``. The rule's facts are
``resc.rule``, ``resc.event``, ``resc.watcher``, ``resc.root``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from importlib.metadata import version
from typing import Any

from dramatiq import Broker, Message, Middleware
from dramatiq.broker import MessageProxy
from opentelemetry import context, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ..rules.lineage import CAUSE_OPTION, TRACE_OPTION, valid_id
from .context import context_of, span_context_of, stand_in, traceparent_of

#: The option a sent message's producer span context travels in (W3C ``traceparent``).
TRACEPARENT_OPTION = "traceparent"
#: The ``messaging.system`` of the spans.
SYSTEM = "dramatiq"
#: The fields of a message's cause its span carries, and their attribute names.
CAUSE_ATTRIBUTES = tuple((key, f"resc.{key}") for key in ("rule", "event", "watcher", "root"))


class Tracing(Middleware):
    """Consumer spans per message, producer spans per message sent from code.

    ``tracer_provider``: the provider to take the tracer from (default: the global one,
    which the application or ``opentelemetry-instrument`` sets up)."""

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(
            "resc_dramatiq", version("resc-dramatiq"), tracer_provider=tracer_provider
        )
        self._provider = tracer_provider
        self._local = threading.local()  # the worker thread's open span and its token

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        """A message sent from code (no cause, no context yet) gets a producer span, whose
        context it carries: each of its deliveries and retries is that span's child."""
        options = message.options
        if TRACEPARENT_OPTION in options or CAUSE_OPTION in options:
            return
        actor = message.actor_name
        attributes = _attributes(message.queue_name, message.message_id, actor, "send")
        name = f"send {actor}"
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            traceparent = traceparent_of(span)
        if traceparent is not None:
            options[TRACEPARENT_OPTION] = traceparent

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """Start the message's consumer span, current while the actor runs."""
        # the proxy's attributes read once each (every read goes through __getattr__)
        options, message_id, actor = message.options, message.message_id, message.actor_name
        cause = _cause(options)
        attributes = _attributes(message.queue_name, message_id, actor, "process")
        for key, name in CAUSE_ATTRIBUTES:
            value = cause.get(key)
            if isinstance(value, str):
                attributes[name] = value
        name = f"process {actor}"
        span = self.tracer.start_span(
            name,
            context=self._parent(options, message_id, cause, name),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=_member_links(cause),
        )
        token = context.attach(trace.set_span_in_context(span))
        self._local.open = (message_id, span, token)
        traceparent = traceparent_of(span)
        if traceparent is not None:
            options[TRACE_OPTION] = traceparent

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """End the span (an error when the actor raised)."""
        self._end(message, exception)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        """A message skipped before running (e.g. ``AgeLimit``) ends its span."""
        self._end(message, None)

    def _end(self, message: MessageProxy, exception: BaseException | None) -> None:
        open_ = getattr(self._local, "open", None)
        if open_ is None or open_[0] != message.message_id:
            return
        self._local.open = None
        _, span, token = open_
        if exception is not None:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        span.end()
        context.detach(token)

    def _parent(
        self, options: Mapping[str, Any], message_id: str, cause: Mapping[str, Any], name: str
    ) -> context.Context:
        for traceparent in (cause.get("trace"), options.get(TRACEPARENT_OPTION)):
            if isinstance(traceparent, str):
                found = context_of(traceparent)  # None unless a valid traceparent
                if found is not None:
                    return found
        root = valid_id(cause.get("root")) or message_id
        return stand_in(root, self._root_sampled(name))

    def _root_sampled(self, name: str) -> Callable[[int], bool] | None:
        """Whether the provider's sampler would sample a root span of a trace id (asked
        with an empty context: no parent; None: no sampler to ask, an API-only
        provider): a stand-in parent's sampled flag."""
        sampler = getattr(self.tracer, "sampler", None)
        if sampler is None and self._provider is None:  # the global one, set up since
            sampler = getattr(trace.get_tracer_provider(), "sampler", None)
        if sampler is None:
            return None

        def sampled(trace_id: int) -> bool:
            result = sampler.should_sample(context.Context(), trace_id, name, SpanKind.CONSUMER)
            return bool(result.decision.is_sampled())

        return sampled


def _attributes(queue: str, message_id: str, actor: str, operation: str) -> dict[str, str]:
    """The messaging attributes of the span of ``operation`` of a message (its queue,
    id and actor)."""
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.destination.name": queue,
        "messaging.message.id": message_id,
        "messaging.dramatiq.actor": actor,
    }


def _cause(options: Mapping[str, Any]) -> Mapping[str, Any]:
    cause = options.get(CAUSE_OPTION)
    return cause if isinstance(cause, dict) else {}


def _member_links(cause: Mapping[str, Any]) -> list[Link]:
    """Links to the spans of a join make's members (their traces, as the cause lists)."""
    traces = cause.get("member_traces")
    if not isinstance(traces, list):
        return []
    found = (span_context_of(t) for t in traces if isinstance(t, str))  # None: not valid
    return [Link(c, {"resc.link": "join member"}) for c in found if c is not None]

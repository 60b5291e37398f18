"""OpenTelemetry traces across rule hops (the ``otel`` extra; docs/tracing.md).

* :class:`Tracing`, a Dramatiq middleware: a consumer span per message, under the trace
  context its cause carries (a rule-made message's ``resc_cause.trace``, a sent
  message's ``traceparent``), its own context handed to the done event (``resc_trace``),
  so that the follow-ups' spans are its children, through the router or in the worker;
  a message sent from code gets a producer span;
* :class:`CommitTracer`: the router's commit span, linked to the events of its batch.

Only this package imports OpenTelemetry; nothing else needs the extra.
"""

from __future__ import annotations

from .commit import CommitTracer
from .middleware import Tracing

__all__ = ["CommitTracer", "Tracing"]

"""W3C trace context to and from OpenTelemetry, and the stand-in parent of a message
that came with none.

A message whose cause carries no trace context (its chain began with an event from
outside, or a hop ran untraced) still gets the same trace on every delivery: its parent
is a remote span context whose ids are derived from the chain's root id (or the message
id), so that a redelivery or a retry never forks the trace.
"""

from __future__ import annotations

import hashlib

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = TraceContextTextMapPropagator()


def context_of(traceparent: str) -> Context | None:
    """The context a valid W3C ``traceparent`` names (None: not one)."""
    found = PROPAGATOR.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(found).get_span_context()
    return found if span_context.is_valid else None


def span_context_of(traceparent: str) -> SpanContext | None:
    """The span context of a valid ``traceparent`` (None: not one)."""
    found = context_of(traceparent)
    return None if found is None else trace.get_current_span(found).get_span_context()


def traceparent_of(span: trace.Span) -> str | None:
    """``span``'s W3C ``traceparent`` (None for an invalid, non-recording span)."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def stand_in(key: str) -> Context:
    """A remote, sampled parent whose ids are derived from ``key`` (a root or message id):
    the same key, the same trace."""
    digest = hashlib.sha256(key.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))
    return trace.set_span_in_context(NonRecordingSpan(parent))

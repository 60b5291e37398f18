"""W3C trace context to and from OpenTelemetry, and the stand-in parent of a message
that came with none.

A message whose cause carries no trace context (its chain began with an event from
outside, or a hop ran untraced) still gets the same trace on every delivery: its parent
is a remote span context whose ids are derived from the chain's root id (or the message
id), so that a redelivery or a retry never forks the trace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ..rules.lineage import valid_trace


def span_context_of(traceparent: str) -> SpanContext | None:
    """The remote span context a valid W3C ``traceparent`` names (None: not one), read
    straight from its fields (what the W3C propagator does, without its regex and
    carrier)."""
    if valid_trace(traceparent) is None:
        return None
    flags = TraceFlags(int(traceparent[53:55], 16))
    trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


def context_of(traceparent: str) -> Context | None:
    """The context a valid W3C ``traceparent`` names (None: not one)."""
    found = span_context_of(traceparent)
    return None if found is None else trace.set_span_in_context(NonRecordingSpan(found))


def traceparent_of(span: trace.Span) -> str | None:
    """``span``'s W3C ``traceparent`` (None for an invalid, non-recording span)."""
    c = span.get_span_context()
    if not c.is_valid:
        return None
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"


def stand_in(key: str, sampled: Callable[[int], bool] | None = None) -> Context:
    """A remote parent whose ids are derived from ``key`` (a root or message id): the
    same key, the same trace. It is sampled when ``sampled(trace_id)`` says so (None:
    always), so that a sampler deciding by trace id decides the same for every delivery
    and every message of the chain."""
    digest = hashlib.sha256(key.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    flags = TraceFlags(1 if sampled is None or sampled(trace_id) else 0)
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent))

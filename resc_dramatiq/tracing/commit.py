"""``CommitTracer``: a span per batch the router commits, linked to its events' spans.

A batch is taken, planned and committed by one router while other batches are in flight
(router/loop.py), so its span is recorded when the commit's reply is read, from the
time the batch was taken: ``resc commit <watcher>`` (kind ``INTERNAL``), with
``resc.watcher``, ``resc.events``, ``resc.queued``, and a link to the span of each event's
finishing message (the trace its envelope's cause carries), at most :data:`LINK_LIMIT`
(``resc.links_dropped`` counts the rest).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.metadata import version

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from .context import span_context_of

#: Most links one commit span carries (the SDK's own default limit).
LINK_LIMIT = 128


class CommitTracer:
    """Records the router's commit spans on ``tracer_provider`` (default: the global)."""

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(
            "resc_dramatiq", version("resc-dramatiq"), tracer_provider=tracer_provider
        )

    def committed(
        self, watcher: str, traces: Sequence[str], *, events: int, queued: int, taken_at: float
    ) -> None:
        """Record one committed batch: ``traces`` are its events' traceparents (those
        that carried one), ``taken_at`` the unix time its events were taken."""
        contexts = (span_context_of(t) for t in traces[:LINK_LIMIT])
        links = [Link(c) for c in contexts if c is not None]
        attributes: dict[str, str | int] = {
            "resc.watcher": watcher,
            "resc.events": events,
            "resc.queued": queued,
            "resc.links_dropped": max(0, len(traces) - LINK_LIMIT),
        }
        span = self.tracer.start_span(
            f"resc commit {watcher}",
            kind=SpanKind.INTERNAL,
            links=links,
            attributes=attributes,
            start_time=int(taken_at * 1e9),
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a root of its own
        )
        span.end(end_time=time.time_ns())

"""OpenTelemetry as a production process would run it, for the benchmarks' traced rows.

:func:`provider` is an SDK tracer provider whose spans go through a
``BatchSpanProcessor`` (the production choice) to an exporter that drops them: the cost
measured is making, linking and handing over the spans, not a network.

``python benchmarks/traced.py router CONFIG ...`` runs ``resc-dramatiq router ... --trace``
with that provider as the global one (what ``opentelemetry-instrument`` would set up).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Dropped(SpanExporter):
    """Exports nothing, successfully."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider() -> trace.TracerProvider:
    """The global tracer provider, set once: batched spans, dropped."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        sdk = TracerProvider()
        sdk.add_span_processor(BatchSpanProcessor(Dropped()))
        trace.set_tracer_provider(sdk)
    return trace.get_tracer_provider()


if __name__ == "__main__":
    from resc_dramatiq.cli import main

    provider()
    argv = sys.argv[1:]
    if argv[:1] == ["router"]:
        argv.append("--trace")
    main(argv)

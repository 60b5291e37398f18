"""The chain the tracing tests (and scripts/trace_picture.py) trace: ``cut`` of a roll
makes ``weigh`` and ``inspect``; when both are done, the join sends ``pack``.

Every span goes to one in-memory exporter on the global tracer provider (set once per
process: OpenTelemetry allows one), which :func:`spans` reads and clears.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resc_dramatiq import Completion, Join, Registry
from resc_dramatiq.testing import Pipeline
from resc_dramatiq.tracing import Tracing

EXPORTER = InMemorySpanExporter()
#: What each stage does: a few ms, so that the spans have a width in the picture.
WORK_S = 0.003
REG = Registry()


def provider() -> trace.TracerProvider:
    """The global tracer provider, an SDK one exporting to :data:`EXPORTER` (set once)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        sdk = TracerProvider()
        sdk.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(sdk)
    return trace.get_tracer_provider()


def spans() -> list[ReadableSpan]:
    """The spans ended since the last call, oldest first."""
    found = sorted(EXPORTER.get_finished_spans(), key=lambda s: s.start_time or 0)
    EXPORTER.clear()
    return found


def declare(broker: RedisBroker) -> dict[str, Any]:
    """The chain's actors on ``broker`` (their rules in :data:`REG`)."""

    @dramatiq.actor(broker=broker, queue_name="cut", done_event="cut/${roll}")
    def cut(roll: str) -> None:
        time.sleep(WORK_S)

    @REG.on_done(r"^cut/(?P<roll>\d+)$")
    @dramatiq.actor(broker=broker, queue_name="weigh")
    def weigh(roll: str) -> None:
        time.sleep(WORK_S)

    @REG.on_done(r"^cut/(?P<roll>\d+)$")
    @dramatiq.actor(broker=broker, queue_name="inspect")
    def inspect(roll: str) -> None:
        time.sleep(WORK_S)

    @REG.on_done(
        r"^(?P<stage>weigh|inspect)/(?P<roll>\d+)$",
        join=Join(group="roll/${roll}", member="${stage}", expect=["weigh", "inspect"]),
    )
    @dramatiq.actor(broker=broker, queue_name="pack", done_event=False)
    def pack(roll: str) -> None:
        time.sleep(WORK_S)

    return {"cut": cut, "weigh": weigh, "inspect": inspect, "pack": pack}


def traced_broker(url: str) -> RedisBroker:
    """A broker with ``Tracing`` and ``Completion(lineage=True)`` (its first messages'
    done events carry their cause, so the router can name their spans)."""
    broker = RedisBroker(url=url)  # type: ignore[no-untyped-call]
    broker.add_middleware(Tracing(tracer_provider=provider()))
    broker.add_middleware(Completion(lineage=True), before=Retries)
    return broker


def config(directory: Path, *, records: bool = True) -> Path:
    """The watcher of the done list, reading envelopes (``lineage: true``; with
    ``records`` false, ``lineage: {records: false}``: causes read, nothing kept)."""
    path = directory / "traced.json"
    lineage: Any = True if records else {"records": False}
    path.write_text(json.dumps({"watchers": [{"input_queue": "global/done", "lineage": lineage}]}))
    return path


@contextmanager
def pipeline(
    url: str, directory: Path, *, inline: bool, records: bool = True
) -> Iterator[tuple[Pipeline, dict[str, Any]]]:
    """The chain on a traced broker, run by the testing kit."""
    broker = traced_broker(url)
    actors = declare(broker)
    try:
        with Pipeline(broker, rules=config(directory, records=records), inline=inline) as running:
            yield running, actors
    finally:
        REG.clear()
        broker.close()


def run_chain() -> list[ReadableSpan]:
    """One roll through the router, on the session's server: its spans."""
    import tempfile

    from resc_dramatiq.testing import session_server

    server = session_server()
    server.flush()
    spans()
    with (
        tempfile.TemporaryDirectory() as tmp,
        pipeline(server.url, Path(tmp), inline=False) as (
            running,
            actors,
        ),
    ):
        actors["cut"].send("7")
        running.run_until_idle()
    return spans()

"""OpenTelemetry across rule hops, with the SDK's in-memory exporter: a chain with a join
is one trace, through the router and in the worker; the router's commit spans link the
events' spans; a message delivered twice, or retried, stays in its trace."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from resc_dramatiq.testing import Pipeline, RescTestServer
from tests import tracing_chain
from tests.tracing_chain import pipeline, spans


@pytest.fixture(autouse=True)
def _fresh_spans() -> Iterator[None]:
    tracing_chain.provider()
    spans()
    yield
    tracing_chain.REG.clear()


def named(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


@pytest.mark.parametrize(
    ("inline", "records"),
    [(True, True), (False, True), (False, False)],
    ids=["in the worker", "through the router", "through the router, no records"],
)
def test_a_chain_with_a_join_is_one_trace(
    resc_server: RescTestServer, tmp_path: Path, inline: bool, records: bool
) -> None:
    with pipeline(resc_server.url, tmp_path, inline=inline, records=records) as (running, actors):
        actors["cut"].send("7")
        running.run_until_idle()
    assert bool(resc_server.client().keys("global/done/lineage/*")) == records
    found = spans()
    (send,) = named(found, "send cut")
    (cut,) = named(found, "process cut")
    (weigh,) = named(found, "process weigh")
    (inspect,) = named(found, "process inspect")
    (pack,) = named(found, "process pack")
    chain = [send, cut, weigh, inspect, pack]
    assert {s.context.trace_id for s in chain} == {send.context.trace_id}
    assert send.kind == SpanKind.PRODUCER and cut.kind == SpanKind.CONSUMER
    assert cut.parent is not None and cut.parent.span_id == send.context.span_id
    for stage in (weigh, inspect):
        assert stage.parent is not None and stage.parent.span_id == cut.context.span_id
        assert stage.attributes is not None and stage.attributes["resc.event"] == "cut/7"
    # the join's make: a child of the member that completed the group, linked to both
    assert pack.parent is not None
    assert pack.parent.span_id in {weigh.context.span_id, inspect.context.span_id}
    assert {link.context.span_id for link in pack.links} == {
        weigh.context.span_id,
        inspect.context.span_id,
    }
    assert pack.attributes is not None
    assert pack.attributes["messaging.destination.name"] == "pack"
    assert pack.attributes["messaging.dramatiq.actor"] == "pack"
    assert pack.attributes["messaging.system"] == "dramatiq"
    assert pack.attributes["resc.rule"] and pack.attributes["resc.watcher"] == "global/done"
    commits = [s for s in found if s.name == "resc commit global/done"]
    if inline:
        assert commits == []  # no router
    else:
        linked = {link.context.span_id for c in commits for link in c.links}
        assert {cut.context.span_id, weigh.context.span_id, inspect.context.span_id} <= linked
        assert sum(int(c.attributes["resc.queued"]) for c in commits if c.attributes) == 3


def test_a_message_delivered_twice_stays_in_its_trace(
    resc_server: RescTestServer, tmp_path: Path
) -> None:
    with pipeline(resc_server.url, tmp_path, inline=True) as (running, actors):
        running.close()  # no worker while the message is put back
        actors["cut"].send("8")
        client = running.client
        [rid] = client.lrange("dramatiq:cut", 0, -1)
        payload = json.loads(client.hget("dramatiq:cut.msgs", rid) or b"")
        payload["options"]["redis_message_id"] = again = str(uuid.uuid4())
        client.hset("dramatiq:cut.msgs", again, json.dumps(payload))
        client.rpush("dramatiq:cut", again)  # as a redelivery after a worker died
        running.start()
        running.run_until_idle()
    found = spans()
    (send,) = named(found, "send cut")
    cuts = named(found, "process cut")
    assert len(cuts) == 2
    assert {s.context.trace_id for s in cuts} == {send.context.trace_id}
    assert {s.parent.span_id for s in cuts if s.parent} == {send.context.span_id}
    assert len(named(found, "process pack")) == 1  # the follow-ups, once


def test_a_retry_stays_in_its_trace_and_the_failure_is_recorded(
    resc_server: RescTestServer, tmp_path: Path
) -> None:
    with pipeline(resc_server.url, tmp_path, inline=True) as (running, _):
        failed: list[str] = []

        @dramatiq.actor(broker=running.broker, queue_name="flaky", min_backoff=10, max_backoff=20)
        def flaky() -> None:
            if not failed:
                failed.append("once")
                raise RuntimeError("first try")

        running.close()
        running.start()
        flaky.send()
        running.run_until_idle()
    found = named(spans(), "process flaky")
    assert len(found) == 2 and len({s.context.trace_id for s in found}) == 1
    assert len({s.parent.span_id for s in found if s.parent}) == 1
    assert [s.status.status_code for s in found] == [StatusCode.ERROR, StatusCode.UNSET]


def test_an_async_actors_own_spans_nest_under_its_message_span(
    resc_server: RescTestServer, tmp_path: Path
) -> None:
    from dramatiq.middleware.asyncio import AsyncIO
    from opentelemetry import trace

    broker = tracing_chain.traced_broker(resc_server.url)
    broker.add_middleware(AsyncIO())
    tracer = trace.get_tracer("app")

    @dramatiq.actor(broker=broker, queue_name="fetch")
    async def fetch(roll: str) -> None:
        with tracer.start_as_current_span("download"):
            pass

    try:
        with Pipeline(broker, rules=tracing_chain.config(tmp_path), inline=True) as running:
            fetch.send("9")
            running.run_until_idle()
    finally:
        broker.close()
    found = spans()
    (process,) = named(found, "process fetch")
    (download,) = named(found, "download")
    assert download.parent is not None and download.parent.span_id == process.context.span_id
    assert download.context.trace_id == process.context.trace_id


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, "none"), (0.5, "some"), (1.0, "all")])
def test_a_chain_from_an_outside_event_is_sampled_as_the_providers_sampler_says(
    resc_server: RescTestServer, tmp_path: Path, ratio: float, expected: str
) -> None:
    """A message whose chain began with an event pushed from outside has a stand-in
    parent: the sampler decides on its trace id as for a root span, the same way on every
    delivery (it was always sampled, whatever the sampler)."""
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import Retries
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from resc_dramatiq import Completion
    from resc_dramatiq.tracing import Tracing

    exporter = InMemorySpanExporter()
    sampled = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    sampled.add_span_processor(SimpleSpanProcessor(exporter))
    broker = RedisBroker(url=resc_server.url)  # type: ignore[no-untyped-call]
    broker.add_middleware(Tracing(tracer_provider=sampled))
    broker.add_middleware(Completion(), before=Retries)
    ran: list[str] = []

    @dramatiq.actor(broker=broker, queue_name="weigh", done_event=False)
    def weigh(roll: str) -> None:
        ran.append(roll)

    rule = {"name": "weigh", "on": r"^roll/(?P<roll>\d+)$"}
    rule["make"] = {"task": "weigh/${roll}", "actor": "weigh", "args": ["${roll}"]}
    config = tmp_path / "outside.json"
    watcher = {"input_queue": "outside/done", "lineage": {"records": False}, "rules": [rule]}
    config.write_text(json.dumps({"watchers": [watcher]}))
    try:
        with Pipeline(broker, rules=config, inline=False) as running:
            for roll in range(40):
                running.push(f"roll/{roll}")
            running.run_until_idle()
    finally:
        broker.close()
    assert sorted(ran, key=int) == [str(r) for r in range(40)]
    found = [s for s in exporter.get_finished_spans() if s.name == "process weigh"]
    assert all(s.parent is not None and s.parent.is_remote for s in found)
    count = {"none": 0, "all": 40}.get(expected)
    if count is not None:
        assert len(found) == count
    else:  # a coin per trace id: all 40 alike would be a 1 in 2**39 chance
        assert 0 < len(found) < 40

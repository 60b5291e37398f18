"""The testing kit (``resc_dramatiq.testing``) on its own fixtures: README's ``shop.py``
chain run to idle (inline and through the router), failing chains reported by queue, a
join through the harness, the pure ``made_by`` and the StubBroker refusal."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from resc_dramatiq import Completion, Join, Registry
from resc_dramatiq.testing import NotIdle, Pipeline, RescTestServer, made_by
from resc_dramatiq.worker.completion import BootRefused
from tests.test_docs import ROOT, blocks_of

#: The registry of this module's code rules (the kit finds it in the actors' module).
REG = Registry()

Actors = dict[str, Any]


@pytest.fixture(autouse=True)
def _clear_registry() -> Iterator[None]:
    yield
    REG.clear()


def shop(broker: RedisBroker) -> Actors:
    """README's ``shop.py``: acquire -> treat (once per product) -> report."""

    @dramatiq.actor(
        broker=broker, queue_name="acquire", done_event="acq/${process_id}/${product_id}"
    )
    def acquire(process_id: str, product_id: str) -> None: ...

    @REG.on_done(r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$", set="treat/${product_id}/todo")
    @dramatiq.actor(broker=broker, queue_name="treat")
    def treat(process_id: str, product_id: str) -> None: ...

    @REG.on_done(r"^treat/(?P<process_id>\d+)/(?P<product_id>\d+)$")
    @dramatiq.actor(broker=broker, queue_name="report")
    def report(process_id: str, product_id: str) -> None: ...

    return {"acquire": acquire, "treat": treat, "report": report}


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "router"])
def test_the_shop_chain_runs_to_idle(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline], inline: bool
) -> None:
    actors = shop(resc_broker)
    pipeline = resc_pipeline(inline=inline)
    began = time.monotonic()
    actors["acquire"].send("1", "42")
    actors["acquire"].send("2", "7")
    pipeline.run_until_idle()
    logging.getLogger(__name__).info("shop chain idle in %.3f s", time.monotonic() - began)
    assert pipeline.counts() == {"acquire": 2, "treat": 2, "report": 2}
    assert pipeline.calls("report") == [
        {"process_id": "1", "product_id": "42"},
        {"process_id": "2", "product_id": "7"},
    ]
    assert pipeline.tasks() == ["report/1/42", "report/2/7", "treat/1/42", "treat/2/7"]
    # report's own done events feed nothing: not written in the worker (counted as
    # leaves when the worker stops), counted as unmatched by the router
    assert pipeline.stats()["unmatched"] == (0 if inline else 2)
    assert pipeline.pending() == [] and pipeline.dead_letters() == []


def test_the_dedup_set_keeps_one_treat_per_product_while_it_is_pending(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    actors = shop(resc_broker)
    # treat's queue is left unconsumed first: the second acquire finds treat/1/42 pending
    pipeline = resc_pipeline(inline=False, queues={"acquire"})
    actors["acquire"].send("1", "42")
    actors["acquire"].send("1", "42")
    with pytest.raises(NotIdle) as raised:
        pipeline.run_until_idle(timeout_s=0.5)
    assert "queue 'treat' (dramatiq:treat): 1 -> treat(process_id='1', product_id='42')" in str(
        raised.value
    )
    assert pipeline.stats()["deduplicated"] == 1


def test_a_queue_no_worker_consumes_is_named_with_what_it_holds(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    actors = shop(resc_broker)
    pipeline = resc_pipeline(queues={"acquire", "treat"})  # nobody consumes "report"
    actors["acquire"].send("1", "42")
    with pytest.raises(NotIdle) as raised:
        pipeline.run_until_idle(timeout_s=0.5)
    message = str(raised.value)
    assert message.startswith("pipeline not idle after 0.5s; still pending:")
    assert (
        "queue 'report' (dramatiq:report): 1 -> report(process_id='1', product_id='42')"
    ) in message
    assert [p.key for p in raised.value.pending] == ["dramatiq:report"]
    assert pipeline.counts() == {"acquire": 1, "treat": 1}


def test_an_actor_that_keeps_retrying_is_named(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    @dramatiq.actor(broker=resc_broker, max_retries=1_000, min_backoff=10, max_backoff=20)
    def flaky(n: int) -> None:
        raise RuntimeError("still broken")

    pipeline = resc_pipeline()
    flaky.send(3)
    with pytest.raises(NotIdle) as raised:
        pipeline.run_until_idle(timeout_s=0.5)
    assert "flaky(3)" in str(raised.value)
    # waiting for its next try, or being tried: always in queue "default" or its delay queue
    for p in raised.value.pending:
        assert p.key.startswith(("dramatiq:default", "dramatiq:__acks__.")), p
        assert p.key.endswith((":default", ".default", ".default.DQ", ":default.DQ")), p
    runs = pipeline.runs("flaky")
    assert runs and {r.outcome for r in runs} == {"retried"}
    assert runs[0].error == "RuntimeError: still broken"


def test_a_message_failed_for_good_is_dead_lettered_and_read_back(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    @dramatiq.actor(broker=resc_broker, max_retries=0, done_event="fetched/${n}")
    def fetch(n: int) -> None:
        raise ValueError(f"no page {n}")

    pipeline = resc_pipeline()
    fetch.send(9)
    pipeline.run_until_idle()
    assert [(r.actor, r.args, r.outcome) for r in pipeline.runs()] == [("fetch", (9,), "failed")]
    dead = pipeline.dead_messages()
    assert [(m.actor, m.args, m.queue_name) for m in dead] == [("fetch", (9,), "default")]
    assert pipeline.client.lrange("global/done/failed", 0, -1) == [b"fetched/9"]


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "router"])
def test_a_join_completes_through_the_harness(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline], inline: bool
) -> None:
    stages = {}
    for stage in ("cut", "weigh", "inspect"):

        def work(roll: str) -> None: ...

        work.__name__ = stage
        stages[stage] = dramatiq.actor(broker=resc_broker, done_event=f"{stage}/${{roll}}")(work)

    @REG.on_done(
        r"^(?P<stage>cut|weigh|inspect)/(?P<roll>\d+)$",
        join=Join(group="roll/${roll}", member="${stage}", expect=["cut", "weigh", "inspect"]),
    )
    @dramatiq.actor(broker=resc_broker, done_event=False)
    def pack(roll: str) -> None: ...

    pipeline = resc_pipeline(inline=inline)
    stages["cut"].send("7")
    stages["weigh"].send("7")
    pipeline.run_until_idle()
    assert "pack" not in pipeline.counts()  # two members of three
    stages["inspect"].send("7")
    stages["cut"].send("7")  # a repeat of a member changes nothing
    pipeline.run_until_idle()
    assert pipeline.calls("pack") == [{"roll": "7"}]


def test_made_by_needs_no_server(resc_broker: RedisBroker) -> None:
    shop(resc_broker)  # declares the actors; nothing runs
    made = made_by(resc_broker, "acq/1/42")
    assert [(t["task"], t["set"], t["target"]["actor"], t["target"]["kwargs"]) for t in made] == [
        ("treat/1/42", "treat/42/todo", "treat", {"process_id": "1", "product_id": "42"})
    ]
    assert made_by(resc_broker, "report/1/42") == []


def test_a_stub_broker_with_completion_refuses_to_boot() -> None:
    broker = StubBroker()
    broker.add_middleware(Completion(), before=Retries)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=1)
    with pytest.raises(
        BootRefused,
        match=r"a StubBroker cannot run them; test with "
        r"resc_dramatiq\.testing \(docs/testing\.md\)",
    ):
        worker.start()
    worker.stop()


def test_the_session_server_is_one_and_flushed_per_test(resc_server: RescTestServer) -> None:
    client = resc_server.client()
    try:
        assert client.dbsize() == 0
        client.set("left/behind", "1")  # the next test's flush takes it away
    finally:
        client.close()


@pytest.mark.parametrize(
    ("page", "tests", "passed"),
    [("testing.md", "test_factory.py", 6), ("joins.md", "test_mill.py", 2)],
)
def test_the_example_of_a_docs_page_passes_as_written(
    tmp_path: Path, page: str, tests: str, passed: int
) -> None:
    """The page's files, written out, pass under pytest with the kit's plugin (in a
    process of their own: the example's ``@on_done`` rules go to the default registry)."""
    for block in blocks_of(ROOT / "docs" / page):
        if block.marker is not None and block.marker[0] == "file":
            (tmp_path / block.marker[1]).write_text(block.text)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{passed} passed" in done.stdout

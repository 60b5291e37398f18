"""Completion middleware: done and failure events, dedup release, on a real worker.

Messages carry the ``resc`` option exactly as the router writes it; each test runs a
real ``dramatiq.Worker`` on a real ``RedisBroker`` over the session's Redis.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware, Retries
from redis.backoff import NoBackoff
from redis.retry import Retry

from resc_dramatiq.errors import ConfigError
from resc_dramatiq.worker.completion import Completion
from tests.helpers import running, wait_for

DONE = "global/done"


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    """A Redis broker with Completion before Retries (fast retries)."""
    b = RedisBroker(url=redis_url)
    b.add_middleware(Completion(), before=Retries)
    for m in b.middleware:
        if isinstance(m, Retries):
            m.min_backoff, m.max_backoff = 10, 20
    dramatiq.set_broker(b)
    yield b
    b.client.connection_pool.disconnect()


def resc(task: str, *, set: str | None = None, release: str = "taken") -> dict[str, Any]:
    """The message option the router writes."""
    return {"resc": {"task": task, "set": set, "release": release, "done": DONE}}


def test_success_emits_the_task_string_on_the_done_list(
    broker: RedisBroker, r: redis.Redis
) -> None:
    @dramatiq.actor(broker=broker)
    def treat() -> None:
        pass

    with running(broker):
        treat.send_with_options(**resc("trt/1/2"))
        assert wait_for(lambda: r.lrange(DONE, 0, -1)) == [b"trt/1/2"]


def test_done_event_is_written_before_the_ack(broker: RedisBroker, r: redis.Redis) -> None:
    seen_at_ack: list[list[bytes]] = []

    class AckProbe(Middleware):  # type: ignore[misc]
        def before_ack(self, broker: Any, message: Any) -> None:
            seen_at_ack.append(r.lrange(DONE, 0, -1))

    broker.add_middleware(AckProbe())

    @dramatiq.actor(broker=broker)
    def treat() -> None:
        pass

    with running(broker):
        treat.send_with_options(**resc("trt/1/2"))
        wait_for(lambda: seen_at_ack)
    assert seen_at_ack == [[b"trt/1/2"]]


def test_a_retried_failure_emits_nothing_until_it_succeeds(
    broker: RedisBroker, r: redis.Redis
) -> None:
    attempts: list[int] = []

    @dramatiq.actor(broker=broker, max_retries=3)
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    with running(broker):
        flaky.send_with_options(**resc("flaky/1"))
        wait_for(lambda: r.llen(DONE))
    assert len(attempts) == 3
    assert r.lrange(DONE, 0, -1) == [b"flaky/1"]
    assert r.llen(f"{DONE}/failed") == 0


def test_a_message_failed_for_good_emits_a_failure_event(
    broker: RedisBroker, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="dramatiq.worker")

    @dramatiq.actor(broker=broker, max_retries=1)
    def broken() -> None:
        raise RuntimeError("always")

    with running(broker):
        broken.send_with_options(**resc("broken/7"))
        assert wait_for(lambda: r.lrange(f"{DONE}/failed", 0, -1)) == [b"broken/7"]
    assert r.llen(DONE) == 0


def test_the_failure_list_is_configurable_per_actor(broker: RedisBroker, r: redis.Redis) -> None:
    @dramatiq.actor(broker=broker, max_retries=0, failed_queue="alerts")
    def broken() -> None:
        raise RuntimeError("always")

    with running(broker):
        broken.send_with_options(**resc("broken/8"))
        assert wait_for(lambda: r.lrange("alerts", 0, -1)) == [b"broken/8"]


def test_release_taken_removes_the_dedup_entry_before_the_actor_runs(
    broker: RedisBroker, r: redis.Redis
) -> None:
    r.zadd("products/2/todo", {"trt/1/2": 1})
    during: list[float | None] = []

    @dramatiq.actor(broker=broker)
    def treat() -> None:
        during.append(r.zscore("products/2/todo", "trt/1/2"))

    with running(broker):
        treat.send_with_options(**resc("trt/1/2", set="products/2/todo"))
        wait_for(lambda: r.llen(DONE))
    assert during == [None]


def test_release_done_keeps_the_dedup_entry_until_success(
    broker: RedisBroker, r: redis.Redis
) -> None:
    r.zadd("products/2/todo", {"trt/1/2": 1})
    during: list[float | None] = []

    @dramatiq.actor(broker=broker)
    def treat() -> None:
        during.append(r.zscore("products/2/todo", "trt/1/2"))

    with running(broker):
        treat.send_with_options(**resc("trt/1/2", set="products/2/todo", release="done"))
        wait_for(lambda: r.llen(DONE))
    assert during == [1.0]
    assert r.zscore("products/2/todo", "trt/1/2") is None


def test_a_leaf_actor_writes_no_done_event_but_still_its_failures_and_releases(
    broker: RedisBroker, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="dramatiq.worker")
    r.zadd("products/3/todo", {"pub/3": 1})

    @dramatiq.actor(broker=broker, max_retries=0, done_event=False)
    def publish(fail: bool) -> None:
        if fail:
            raise RuntimeError("refused")

    with running(broker):
        publish.send_with_options(
            args=(False,), **resc("pub/3", set="products/3/todo", release="done")
        )
        publish.send_with_options(args=(True,), **resc("pub/4"))
        assert wait_for(lambda: r.lrange(f"{DONE}/failed", 0, -1)) == [b"pub/4"]
        broker.join(publish.queue_name)
        assert wait_for(lambda: r.zscore("products/3/todo", "pub/3") is None)
    assert r.llen(DONE) == 0
    assert r.exists(f"{DONE}/messages") == 0  # no marker: nothing was written for the success


def test_an_app_actor_declares_its_done_event_from_its_arguments(
    broker: RedisBroker, r: redis.Redis
) -> None:
    @dramatiq.actor(broker=broker, done_event="acq/${process_id}/${product_id}")
    def acquire(process_id: int, product_id: int = 9) -> None:
        pass

    with running(broker):
        acquire.send(3, product_id=4)
        acquire.send(5)
        wait_for(lambda: r.llen(DONE) == 2)
    assert sorted(r.lrange(DONE, 0, -1)) == [b"acq/3/4", b"acq/5/9"]


def test_an_app_actor_may_name_its_done_list(broker: RedisBroker, r: redis.Redis) -> None:
    @dramatiq.actor(broker=broker, done_event="raw/${name}", done_queue="raw/done")
    def ingest(name: str) -> None:
        pass

    with running(broker):
        ingest.send("a")
        assert wait_for(lambda: r.lrange("raw/done", 0, -1)) == [b"raw/a"]


@pytest.mark.parametrize(
    "template", ["acq/{p.__class__}", "acq/{p!r}", "acq/{p:>9}", "acq/{", "acq/${p", "acq/}"]
)
def test_a_done_event_that_is_not_plain_fields_fails_at_declaration(
    broker: RedisBroker, template: str
) -> None:
    with pytest.raises(ConfigError, match="literal text and \\$\\{name\\} fields"):

        @dramatiq.actor(broker=broker, done_event=template)
        def acquire(p: str) -> None:
            pass


def test_a_done_event_naming_no_parameter_fails_at_declaration(broker: RedisBroker) -> None:
    with pytest.raises(ConfigError, match="names nme, which the function"):

        @dramatiq.actor(broker=broker, done_event="acq/${nme}")
        def acquire(name: str) -> None:
            pass


def test_the_old_brace_fields_still_work_with_a_deprecation_warning(
    r: redis.Redis, broker: RedisBroker
) -> None:
    with pytest.warns(DeprecationWarning, match=r"write 'raw/\$\{name\}'"):

        @dramatiq.actor(broker=broker, done_event="raw/{name}", done_queue="raw/done")
        def ingest(name: str) -> None:
            pass

    with running(broker):
        ingest.send("a")
        assert wait_for(lambda: r.lrange("raw/done", 0, -1)) == [b"raw/a"]


def test_redis_errors_in_hooks_are_retried_then_logged_loudly(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a port nobody listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = redis.Redis(port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(Completion(client=dead, attempts=3), before=Retries)
    ran: list[int] = []

    @dramatiq.actor(broker=broker)
    def treat() -> None:
        ran.append(1)

    with running(broker):
        treat.send_with_options(**resc("trt/1/2"))
        wait_for(lambda: any("LOST: done event 'trt/1/2'" in m for m in caplog.messages))
    broker.client.connection_pool.disconnect()
    lost = [rec for rec in caplog.records if "LOST" in rec.getMessage()]
    assert ran == [1]
    assert lost[0].levelno == logging.CRITICAL
    assert "after 3 attempt(s)" in lost[0].getMessage()

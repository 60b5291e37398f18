"""Async actors (``async def`` with Dramatiq's ``AsyncIO`` middleware) with Completion:
done events, ``@on_done`` rules routed in the worker, failures; each exactly once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from dramatiq.middleware.asyncio import AsyncIO

from resc_dramatiq import Completion, Registry
from tests.helpers import running, wait_for

#: The registry of this module's code rules (the worker finds it in their module).
REG = Registry()


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    b = RedisBroker(url=redis_url)
    b.add_middleware(AsyncIO())
    b.add_middleware(Completion(route_inline=True), before=Retries)
    yield b
    b.client.connection_pool.disconnect()
    REG.clear()


def test_async_actors_chain_through_on_done_rules_once(broker: RedisBroker, r: redis.Redis) -> None:
    @dramatiq.actor(broker=broker, done_event="fetched/${url_id}")
    async def fetch(url_id: int) -> None:
        await asyncio.sleep(0.01)
        r.hincrby("runs", f"fetch/{url_id}", 1)

    @REG.on_done(r"^fetched/(?P<url_id>\d+)$")
    @dramatiq.actor(broker=broker)
    async def parse(url_id: str) -> None:
        await asyncio.sleep(0.01)
        r.hincrby("runs", f"parse/{url_id}", 1)

    for n in range(5):
        fetch.send(n)
    with running(broker):
        wait_for(lambda: r.hlen("runs") == 10)
        broker.join(fetch.queue_name)
    assert {k.decode(): int(v) for k, v in r.hgetall("runs").items()} == {
        **{f"fetch/{n}": 1 for n in range(5)},
        **{f"parse/{n}": 1 for n in range(5)},
    }
    assert r.llen("global/done") == 0  # routed in the worker
    # parse's own done events (rule-made messages) match no rule: not written, counted
    # as leaves (the worker wrote its last counts as it stopped)
    assert r.hget("global/done/stats", "unmatched") is None
    assert r.hget("global/done/stats", "leaf") == b"5"


def test_an_async_actor_failed_for_good_writes_its_failure_event(
    broker: RedisBroker, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="dramatiq.worker")

    @dramatiq.actor(broker=broker, max_retries=0, done_event="fetched/${url_id}")
    async def fetch(url_id: int) -> None:
        raise RuntimeError("unreachable")

    @REG.on_done(r"^fetched/(?P<url_id>\d+)$")
    @dramatiq.actor(broker=broker)
    async def parse(url_id: str) -> None:
        r.hincrby("runs", f"parse/{url_id}", 1)

    fetch.send(7)
    with running(broker):
        assert wait_for(lambda: r.lrange("global/done/failed", 0, -1)) == [b"fetched/7"]
    assert r.llen("global/done") == 0 and r.hlen("runs") == 0  # no follow-up of a failure

"""Actor targets: the router's messages run on a real Dramatiq worker and RedisBroker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq.config.model import Config
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import wait_for


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    """Routers and worker threads open more connections on ``r``: close them after."""
    yield
    r.connection_pool.disconnect()


DONE = "global/done"
RULES = {
    "watchers": [
        {
            "input_queue": DONE,
            "rules": [
                {
                    "name": "treat",
                    "on": r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$",
                    "make": [
                        {"actor": "treat", "task": "trt/${process_id}/${product_id}"},
                        {
                            "actor": "remind",
                            "task": "remind/${product_id}",
                            "kwargs": {"product": "${product_id}", "times": 2},
                            "delay_ms": 1200,
                        },
                    ],
                }
            ],
        }
    ]
}


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    """A RedisBroker in Dramatiq's default namespace on the session's Redis."""
    b = RedisBroker(url=redis_url)
    dramatiq.set_broker(b)
    yield b
    b.close()


@pytest.fixture
def calls(broker: RedisBroker) -> Iterator[list[tuple[str, dict[str, Any], float]]]:
    """The actors, declared on ``broker``, and a worker running them; yields their calls."""
    seen: list[tuple[str, dict[str, Any], float]] = []

    @dramatiq.actor(broker=broker)
    def treat(**kwargs: Any) -> None:
        seen.append(("treat", kwargs, time.time()))

    @dramatiq.actor(broker=broker)
    def remind(**kwargs: Any) -> None:
        seen.append(("remind", kwargs, time.time()))

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    yield seen
    worker.stop()


def route(r: redis.Redis, *events: str) -> float:
    r.lpush(DONE, *events)
    Router(ruleset=RuleSet.compile(Config.from_data(RULES)), client=r).run_until_idle()
    return time.time()


def test_an_actor_target_runs_on_a_dramatiq_worker_with_the_named_groups_as_kwargs(
    r: redis.Redis, calls: list[tuple[str, dict[str, Any], float]]
) -> None:
    route(r, "acq/1/10")
    wait_for(lambda: [c for c in calls if c[0] == "treat"], what="treat ran")
    [(_, kwargs, _)] = [c for c in calls if c[0] == "treat"]
    assert kwargs == {"process_id": "1", "product_id": "10"}


def test_a_delayed_actor_target_runs_after_its_delay_with_its_kwargs(
    r: redis.Redis, calls: list[tuple[str, dict[str, Any], float]]
) -> None:
    routed_at = route(r, "acq/2/20")
    wait_for(lambda: [c for c in calls if c[0] == "remind"], what="remind ran")
    [(_, kwargs, ran_at)] = [c for c in calls if c[0] == "remind"]
    assert kwargs == {"product": "20", "times": 2}
    assert ran_at - routed_at >= 1.2 - 0.05  # not before its eta (clock granularity)


def test_a_routed_message_is_acknowledged_and_leaves_no_trace_in_the_broker(
    r: redis.Redis, calls: list[tuple[str, dict[str, Any], float]]
) -> None:
    route(r, "acq/3/30")
    wait_for(lambda: len(calls) == 2, what="both messages ran")

    def broker_is_empty() -> bool:
        keys = [k.decode() for k in r.keys("dramatiq:*")]
        return not [k for k in keys if k.endswith((".msgs", "default", "default.DQ"))]

    wait_for(broker_is_empty, what="the messages are acked")

"""A three-stage pipeline, routed in the worker by Completion or by the router.

acq/<process>/<product> (app actor ``acquire``) -> treat -> propagate -> report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq.config.model import Config
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.worker.completion import Completion
from tests.helpers import wait_for

DONE = "global/done"
PRODUCTS = [(1, 10), (1, 11), (2, 20)]


def chain_rules(*, fetch_on_report: bool = False) -> RuleSet:
    """acq -> treat (deduplicated per product) -> propagate -> report."""
    ids = r"(?P<process_id>\d+)/(?P<product_id>\d+)"
    report: dict[str, Any] = {"name": "report", "on": f"^prop/{ids}$"}
    report["make"] = {"actor": "report", "task": "rep/${process_id}/${product_id}"}
    if fetch_on_report:
        report["fetch"] = [{"url": "http://127.0.0.1:9/none", "returns": "x"}]
    data = {
        "watchers": [
            {
                "input_queue": DONE,
                "rules": [
                    {
                        "name": "treat",
                        "on": f"^acq/{ids}$",
                        "make": {
                            "actor": "treat",
                            "task": "trt/${process_id}/${product_id}",
                            "set": "products/${product_id}/todo",
                        },
                    },
                    {
                        "name": "propagate",
                        "on": f"^trt/{ids}$",
                        "make": {"actor": "propagate", "task": "prop/${process_id}/${product_id}"},
                    },
                    report,
                ],
            }
        ]
    }
    return RuleSet.compile(Config.from_data(data))


def declare_chain(broker: RedisBroker, r: redis.Redis) -> dramatiq.Actor:
    """The pipeline's actors; each counts its runs in the ``runs`` hash."""

    def record(stage: str, process_id: Any, product_id: Any) -> None:
        r.hincrby("runs", f"{stage}/{process_id}/{product_id}", 1)

    @dramatiq.actor(broker=broker, done_event="acq/${process_id}/${product_id}")
    def acquire(process_id: int, product_id: int) -> None:
        record("acquire", process_id, product_id)

    @dramatiq.actor(broker=broker)
    def treat(process_id: str, product_id: str) -> None:
        record("treat", process_id, product_id)

    @dramatiq.actor(broker=broker)
    def propagate(process_id: str, product_id: str) -> None:
        record("propagate", process_id, product_id)

    @dramatiq.actor(broker=broker)
    def report(process_id: str, product_id: str) -> None:
        record("report", process_id, product_id)

    return acquire


def make_broker(redis_url: str, completion: Completion) -> RedisBroker:
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(completion, before=Retries)
    return broker


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    """Worker threads and the router open more connections on ``r``: close them."""
    yield
    r.connection_pool.disconnect()


def every_stage_ran_once(r: redis.Redis) -> bool:
    runs = {k.decode(): int(v) for k, v in r.hgetall("runs").items()}
    expected = {
        f"{stage}/{p}/{q}"
        for stage in ("acquire", "treat", "propagate", "report")
        for p, q in PRODUCTS
    }
    return set(runs) == expected and set(runs.values()) == {1}


def test_the_worker_routes_a_three_stage_chain_without_the_router(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    ruleset = chain_rules()
    broker = make_broker(redis_url, Completion(rules=ruleset))
    acquire = declare_chain(broker, r)
    worker_for(broker)
    for p, q in PRODUCTS:
        acquire.send(p, q)
    wait_for(lambda: every_stage_ran_once(r))
    # the reports' done events match no rule: not written, so not among the events
    wait_for(lambda: int(r.hget(f"{DONE}/stats", "events") or 0) == 3 * len(PRODUCTS))
    assert r.llen(DONE) == 0  # no event went through the router's input
    # the reports' done events match no rule: not written (counted as leaves)
    assert r.hget(f"{DONE}/stats", "unmatched") is None
    assert r.keys(f"{DONE}/taken*") == []  # the workers' taken lists are empty


def test_the_router_routes_the_same_chain(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    ruleset = chain_rules()
    broker = make_broker(redis_url, Completion())
    acquire = declare_chain(broker, r)
    router = Router(ruleset=ruleset, client=r)
    thread = threading.Thread(target=router.run)
    thread.start()
    try:
        worker_for(broker)
        for p, q in PRODUCTS:
            acquire.send(p, q)
        wait_for(lambda: every_stage_ran_once(r))
        wait_for(lambda: int(r.hget(f"{DONE}/stats", "events") or 0) == 4 * len(PRODUCTS))
    finally:
        router.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert r.llen(DONE) == 0


def test_inline_routing_releases_the_dedup_entry_of_the_finished_task(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    broker = make_broker(redis_url, Completion(rules=chain_rules()))
    acquire = declare_chain(broker, r)
    worker_for(broker)
    acquire.send(1, 10)
    wait_for(lambda: every_stage_ran_once_for(r, "report/1/10"))
    assert r.zcard("products/10/todo") == 0  # treat took it: released (release="taken")


def every_stage_ran_once_for(r: redis.Redis, key: str) -> bool:
    return r.hget("runs", key) == b"1"


def test_an_event_of_a_rule_with_fetchers_is_left_to_the_router(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    broker = make_broker(redis_url, Completion(rules=chain_rules(fetch_on_report=True)))
    acquire = declare_chain(broker, r)
    worker_for(broker)
    acquire.send(1, 10)
    assert wait_for(lambda: r.lrange(DONE, 0, -1)) == [b"prop/1/10"]
    assert r.hget("runs", "report/1/10") is None


def test_a_lost_script_cache_is_loaded_again_and_routing_goes_on_inline(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    broker = make_broker(redis_url, Completion(rules=chain_rules()))
    acquire = declare_chain(broker, r)
    worker_for(broker)
    acquire.send(1, 10)
    wait_for(lambda: every_stage_ran_once_for(r, "report/1/10"))
    r.script_flush()  # as after a server restart without persistence of scripts
    acquire.send(2, 20)
    wait_for(lambda: every_stage_ran_once_for(r, "report/2/20"))
    runs = {k.decode(): int(v) for k, v in r.hgetall("runs").items()}
    assert set(runs.values()) == {1}
    assert len(runs) == 8
    assert r.llen(DONE) == 0  # nothing was left for a router
    taken_lists = [k for k in r.keys(f"{DONE}/taken*") if r.type(k) == b"list"]
    assert taken_lists == []


def test_inline_commits_wait_for_replicas_and_say_a_shortfall_once(
    redis_url: str,
    r: redis.Redis,
    worker_for: Callable[[RedisBroker], dramatiq.Worker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    completion = Completion(rules=chain_rules(), wait_replicas=1, wait_timeout_ms=20)
    broker = make_broker(redis_url, completion)
    acquire = declare_chain(broker, r)
    worker_for(broker)
    with caplog.at_level(logging.WARNING):
        for p, q in PRODUCTS:
            acquire.send(p, q)
        wait_for(lambda: every_stage_ran_once(r))
    assert r.llen(DONE) == 0  # every done event was committed inline, none pushed
    # the test server has no replica: every inline commit waited, and came back short
    assert completion.replication is not None and completion.replication.short
    shortfalls = [m for m in caplog.messages if "only 0 of 1 replica(s)" in m]
    assert len(shortfalls) == 1, caplog.messages

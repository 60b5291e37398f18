"""``Redelivery`` runs its rounds per worker: one worker stopping leaves the others' alone.

Each test runs real ``dramatiq.Worker``s on one real ``RedisBroker`` over the session's
Redis, sharing one ``Redelivery``. The workers consume no queue (their whitelist matches
none), so the broker's heartbeat in Redis is written by ``Redelivery``'s rounds alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq.worker.redelivery import Redelivery
from tests.helpers import wait_for

INTERVAL_MS = 100
ROUNDS_S = 10 * INTERVAL_MS / 1000  # long enough for a few rounds, however late


@pytest.fixture
def broker(r: redis.Redis) -> RedisBroker:
    """A broker with one declared queue and a fast ``Redelivery``."""
    b = RedisBroker(client=r)
    b.add_middleware(Redelivery(heartbeat_timeout_ms=3 * INTERVAL_MS, interval_ms=INTERVAL_MS))
    b.declare_queue("work")
    return b


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Stops, at the end of the test, every worker the test started (again if it did)."""
    with ExitStack() as s:
        yield s


def start_worker(broker: RedisBroker, stack: ExitStack) -> dramatiq.Worker:
    """A real worker on ``broker`` that consumes no queue; stopped by ``stack`` at the end."""
    worker = dramatiq.Worker(broker, queues={"elsewhere"}, worker_threads=1, worker_timeout=50)
    stack.callback(worker.stop)  # a second stop() is harmless
    worker.start()
    return worker


def redelivery_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("resc-redelivery-")]


def heartbeat_ms(r: redis.Redis, broker: RedisBroker) -> float:
    """The broker's heartbeat in Dramatiq's sorted set (0 if there is none)."""
    score = r.zscore(f"{broker.namespace}:__heartbeats__", broker.broker_id)
    return float(score or 0)


def heartbeat_after(r: redis.Redis, broker: RedisBroker, since_ms: float) -> float:
    """Wait a few rounds at most for a heartbeat newer than ``since_ms``; return it."""
    beat: float = wait_for(
        lambda: (beat := heartbeat_ms(r, broker)) > since_ms and beat,
        timeout_s=ROUNDS_S,
        what=f"a heartbeat after {since_ms}",
    )
    return beat


def test_stopping_one_of_two_workers_leaves_the_other_workers_heartbeat_running(
    r: redis.Redis, broker: RedisBroker, stack: ExitStack
) -> None:
    worker1 = start_worker(broker, stack)
    worker2 = start_worker(broker, stack)
    assert len(redelivery_threads()) == 2

    worker1.stop()
    survivors = redelivery_threads()
    assert len(survivors) == 1
    first = heartbeat_after(r, broker, heartbeat_ms(r, broker))
    heartbeat_after(r, broker, first)
    assert survivors[0].is_alive()

    worker2.stop()
    assert redelivery_threads() == []


def test_a_worker_started_again_after_a_stop_gets_fresh_rounds(
    r: redis.Redis, broker: RedisBroker, stack: ExitStack
) -> None:
    first = start_worker(broker, stack)
    [old_thread] = redelivery_threads()
    first.stop()
    assert redelivery_threads() == []
    stopped_at = heartbeat_ms(r, broker)

    start_worker(broker, stack)
    [new_thread] = redelivery_threads()
    assert new_thread is not old_thread
    heartbeat_after(r, broker, stopped_at)

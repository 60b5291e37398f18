"""A Dramatiq worker killed with SIGKILL mid-task: the message comes back, the chain
still completes exactly once.

The actor ``hold`` (in ``tests/chaos.py``) counts its start, then waits for a release
key before counting its run. Worker A takes the message and is killed while holding
it; worker B, already running, gets the message once Dramatiq's broker sees A dead.
With ``Redelivery`` that takes seconds; with Dramatiq's defaults it takes the 60 s
heartbeat timeout plus a random maintenance roll (a soak-marked measurement).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from resc_dramatiq.config.model import Config
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.worker.redelivery import Redelivery
from tests.chaos import RELEASE, RUNS, STARTS, WorkerProcess
from tests.helpers import wait_for

INPUT = "global/done"
RULES = {
    "watchers": [
        {
            "input_queue": INPUT,
            "rules": [
                {
                    "on": r"^acq/(?P<n>\d+)$",
                    "make": {
                        "actor": "hold",
                        "queue": "hold",
                        "task": "hold/${n}",
                        "set": "hold/todo",
                        "release": "done",
                    },
                },
                {
                    "on": r"^hold/(?P<n>\d+)$",
                    "make": {"task": "after/${n}", "queue": "after", "set": "after/todo"},
                },
            ],
        }
    ]
}
HEARTBEATS = "dramatiq:__heartbeats__"


@pytest.fixture
def workers(r: redis.Redis, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Worker processes started by the test; every one still running is ended after."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
    r.connection_pool.disconnect()


def route(r: redis.Redis) -> None:
    Router(ruleset=RuleSet.compile(Config.from_data(RULES)), client=r).run_until_idle()


def held_by_a_then_b_up(
    r: redis.Redis, redis_url: str, tmp_path: Path, workers: list[WorkerProcess], *, fast: bool
) -> WorkerProcess:
    """Route ``acq/1``; worker A starts ``hold/1``; worker B is up and idle. Return A."""
    r.lpush(INPUT, "acq/1")
    route(r)
    a = WorkerProcess(url=redis_url, log=tmp_path / "a.log", hold=True, fast=fast)
    workers.append(a)
    wait_for(lambda: r.hget(STARTS, "hold/1"), timeout_s=30, what="A took the message")
    workers.append(WorkerProcess(url=redis_url, log=tmp_path / "b.log", hold=True, fast=fast))
    wait_for(lambda: r.zcard(HEARTBEATS) == 2, timeout_s=30, what="B is up")
    return a


def kill_and_time_redelivery(r: redis.Redis, a: WorkerProcess, timeout_s: float) -> float:
    """SIGKILL A mid-task; return the seconds until the message ran to its end on B."""
    a.kill()
    killed_at = time.monotonic()
    r.set(RELEASE, 1)
    wait_for(lambda: r.hget(RUNS, "hold/1"), timeout_s=timeout_s, poll_s=0.05, what="redelivery")
    return time.monotonic() - killed_at


def route_done_event(r: redis.Redis) -> None:
    """Route until the done event ``hold/1`` made ``after/1``: Completion pushes it just
    after the actor body returns, so it may come a moment after the run is counted."""

    def routed() -> int:
        route(r)
        return int(r.llen("after"))

    wait_for(routed, timeout_s=10, poll_s=0.05, what="the done event routed")


def assert_chain_completed_once(r: redis.Redis) -> None:
    route_done_event(r)  # the done event hold/1 -> after/1
    assert r.hgetall(STARTS) == {b"hold/1": b"2"}  # killed once, run again once
    assert r.hgetall(RUNS) == {b"hold/1": b"1"}
    assert r.lrange("after", 0, -1) == [b"after/1"]
    assert r.zcard("hold/todo") == 0  # released when the message ended
    assert r.llen(INPUT) == 0


def test_a_killed_workers_message_runs_on_another_worker_within_seconds_with_redelivery(
    r: redis.Redis, redis_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    a = held_by_a_then_b_up(r, redis_url, tmp_path, workers, fast=True)
    took_s = kill_and_time_redelivery(r, a, timeout_s=30)
    print(f"redelivery with Redelivery(heartbeat_timeout_ms=3000, interval_ms=500): {took_s:.2f}s")
    assert took_s < 6
    assert_chain_completed_once(r)


def test_a_worker_busy_longer_than_the_heartbeat_timeout_keeps_its_message(
    r: redis.Redis, redis_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    held_by_a_then_b_up(r, redis_url, tmp_path, workers, fast=True)
    deadline = time.monotonic() + 2 * 3.0 + 1  # twice the heartbeat timeout, and a round
    while time.monotonic() < deadline:
        assert r.hget(STARTS, "hold/1") == b"1", "a live worker's message was run twice"
        time.sleep(0.1)
    r.set(RELEASE, 1)
    wait_for(lambda: r.hget(RUNS, "hold/1"), timeout_s=10, what="A finished")
    route_done_event(r)
    assert r.hgetall(RUNS) == {b"hold/1": b"1"}
    assert r.lrange("after", 0, -1) == [b"after/1"]


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_with_dramatiq_defaults_a_killed_workers_message_comes_back_after_the_heartbeat_timeout(
    r: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    a = held_by_a_then_b_up(r, redis_url, tmp_path, workers, fast=False)
    took_s = kill_and_time_redelivery(r, a, timeout_s=3300)
    print(f"redelivery with Dramatiq's defaults: {took_s:.1f}s")
    assert took_s >= 60  # never before the heartbeat timeout
    assert_chain_completed_once(r)


def test_redelivery_refuses_a_heartbeat_timeout_shorter_than_three_rounds() -> None:
    with pytest.raises(ValueError, match="at least 3 x interval_ms"):
        Redelivery(heartbeat_timeout_ms=2_000, interval_ms=1_000)

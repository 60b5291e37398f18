"""Crash safety, proven with real router processes killed with SIGKILL.

Every event makes two tasks: one guarded by a dedup set, one with no set at all. A
task without a set is queued twice as soon as any commit is repeated or half done, so
"each exactly once" for those is the proof that take and commit are atomic.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import redis

from tests.helpers import wait_for
from tests.procs import DONE, RouterProcess, routers
from tests.procs import TWO_TARGET_CONFIG as CONFIG


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "crash.json"
    path.write_text(json.dumps(CONFIG))
    return path


def routed(r: redis.Redis) -> int:
    return int(r.hget(f"{DONE}/stats", "events") or 0)


def assert_each_task_exactly_once(r: redis.Redis, count: int) -> None:
    """Every event routed once: both its tasks queued once, nothing left in flight."""
    for queue in ("trt", "log"):
        tasks = Counter(t.decode() for t in r.lrange(queue, 0, -1))
        assert tasks == Counter(f"{queue}/{i}" for i in range(count)), queue
    assert r.zcard("todo") == count
    assert routed(r) == count  # each event committed exactly once
    assert r.llen(DONE) == 0
    taken = [k for k in r.scan_iter(f"{DONE}/taken*") if r.type(k) == b"list"]
    assert taken == [], f"events left in {taken}"


def test_twenty_four_kills_at_random_moments_lose_nothing_and_queue_nothing_twice(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Half the restarts reuse the name (own list taken back at start), half take a new
    one (the dead instance's list is reclaimed when its heartbeat expires)."""
    rng = random.Random(7)
    pushed, kills, holding, instance = 0, 0, 0, 0
    config = write_config(tmp_path)
    with routers(config=config, redis_url=redis_url, log=tmp_path / "router.log") as start:
        for kills in range(1, 25):
            r.lpush(DONE, *[f"acq/{i}" for i in range(pushed, pushed + 300)])
            pushed += 300
            instance += kills % 2  # every other restart under a new name
            target = routed(r) + rng.randint(1, 250)  # a random moment in the stream
            process = start(instance=f"r{instance}", batch=7, heartbeat_ttl_s=1.5)
            wait_for(lambda t=target: routed(r) >= t, poll_s=0.001, what="progress")
            process.kill()
            holding += r.llen(f"{DONE}/taken/r{instance}") > 0
        final = start(instance="last", batch=50, heartbeat_ttl_s=1.5)
        wait_for(lambda: routed(r) == pushed, timeout_s=20, what="all events routed")
        wait_for(lambda: r.zscore(f"{DONE}/taken/instances", "last"), what="last is up")
        assert final.signal(signal.SIGTERM) == 0
    print(f"{kills} kills, {holding} of them between a take and its commit")
    assert kills == 24 and holding >= 5
    log = (tmp_path / "router.log").read_text()
    assert "left in taken lists handed back" in log  # a restart under the same name
    assert "is gone" in log  # a new name, after the dead one's heartbeat expired
    assert_each_task_exactly_once(r, pushed)


def test_three_routers_on_one_input_route_each_event_once_and_take_over_a_killed_one(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    stream = Stream(r)
    with routers(config=config, redis_url=redis_url, heartbeat_ttl_s=3, batch=10) as start:
        fleet = {n: start(instance=n, log=tmp_path / f"{n}.log") for n in ("a", "b", "c")}
        in_flight = freeze_while_holding_events(stream, fleet["b"], f"{DONE}/taken/b")
        fleet["b"].kill()
        killed_at = time.monotonic()
        stream.push(1000)  # the stream goes on
        wait_for(lambda: r.llen(f"{DONE}/taken/b") == 0, what="b's events reclaimed")
        wait_for(lambda: all_logged(r, in_flight), what="b's events routed")
        takeover_s = time.monotonic() - killed_at
        wait_for(lambda: routed(r) == stream.pushed, what="all events routed")
        for name in ("a", "c"):
            assert fleet[name].signal(signal.SIGTERM) == 0
    print(
        f"in-flight events of the killed router: {len(in_flight)}; routed after {takeover_s:.2f}s"
    )
    assert takeover_s < 15
    assert_each_task_exactly_once(r, stream.pushed)
    assert any("instance b is gone" in fleet[n].output() for n in ("a", "c"))


class Stream:
    """A producer of numbered events."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.pushed = 0

    def push(self, count: int) -> None:
        self.r.lpush(DONE, *[f"acq/{i}" for i in range(self.pushed, self.pushed + count)])
        self.pushed += count


def freeze_while_holding_events(stream: Stream, process: RouterProcess, taken: str) -> list[bytes]:
    """Feed the stream until ``process`` is caught (SIGSTOP) holding events; return them."""

    rng = random.Random(3)

    def frozen_holding() -> list[bytes]:
        stream.push(200)
        time.sleep(rng.uniform(0, 0.01))  # land somewhere inside the burst
        process.proc.send_signal(signal.SIGSTOP)
        time.sleep(0.05)  # a commit already on the wire lands before we look
        held: list[bytes] = stream.r.lrange(taken, 0, -1)  # type: ignore[assignment]
        if not held:
            process.proc.send_signal(signal.SIGCONT)
        return held

    events: list[bytes] = wait_for(
        frozen_holding, timeout_s=30, poll_s=0.005, what="the router holds events"
    )
    return events


def all_logged(r: redis.Redis, events: list[bytes]) -> bool:
    logged = set(r.lrange("log", 0, -1))
    return all(b"log/" + e.removeprefix(b"acq/") in logged for e in events)

"""Redis outages: a Redis of the test's own is stopped mid-stream and started again.

Two router processes must ride it out by themselves: nothing lost, nothing doubled,
one "unreachable" line per outage a router meets in its log (not one per retry), and no
busy loop while Redis is away (their CPU time is measured).
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import redis

from tests.helpers import wait_for
from tests.procs import DONE, own_redis, routers, url_of
from tests.procs import TWO_TARGET_CONFIG as CONFIG

OUTAGE_S = 4.0
EVENTS_PER_ROUND = 4000


def routed(r: redis.Redis) -> int:
    return int(r.hget(f"{DONE}/stats", "events") or 0)


def test_routers_ride_out_two_redis_outages_without_loss_duplicates_or_busy_loops(
    tmp_path: Path,
) -> None:
    config = tmp_path / "outage.json"
    config.write_text(json.dumps(CONFIG))
    with own_redis() as server:
        r = redis.Redis.from_url(url_of(server))
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        with routers(config=config, redis_url=url_of(server), batch=5, heartbeat_ttl_s=3) as start:
            fleet = [start(instance=n, log=log) for n, log in zip("ab", logs, strict=True)]
            cpu_s, in_flight = [], []
            for round_ in range(2):
                first = round_ * EVENTS_PER_ROUND
                r.lpush(DONE, *[f"acq/{i}" for i in range(first, first + EVENTS_PER_ROUND)])
                wait_for(lambda f=first: routed(r) > f + 200, what="routing is under way")
                in_flight.append(r.llen(DONE))
                server.stop()  # mid-stream
                r.connection_pool.disconnect()
                time.sleep(0.5)  # let the routers notice
                before = [cpu_time(p.proc.pid) for p in fleet]
                time.sleep(OUTAGE_S)
                cpu_s += [cpu_time(p.proc.pid) - b for p, b in zip(fleet, before, strict=True)]
                assert routed_or_none(r) is None  # Redis really was away
                server.start()  # same port, same data
                total = first + EVENTS_PER_ROUND
                wait_for(lambda t=total: routed_or_none(r) == t, timeout_s=30, what="all routed")
            for process in fleet:
                assert process.signal(signal.SIGTERM) == 0
        for queue in ("trt", "log"):
            tasks = Counter(t.decode() for t in r.lrange(queue, 0, -1))
            assert tasks == Counter(f"{queue}/{i}" for i in range(2 * EVENTS_PER_ROUND))
        assert not [k for k in r.scan_iter(f"{DONE}/taken*") if r.type(k) == b"list"]
        r.close()
    seen = 0
    for process in fleet:
        unreachable = [ln for ln in process.output().splitlines() if "Redis unreachable" in ln]
        # one line per outage it met, not one per retry: a router still waiting out its
        # backoff from the first outage can sleep through the whole second one
        assert 1 <= len(unreachable) <= 2, process.output()
        seen += len(unreachable)
    assert seen >= 3  # the two outages met by both routers, but for such a sleep
    print(f"events waiting when Redis stopped: {in_flight}")
    print(f"router CPU time during {OUTAGE_S}s outages: {[round(c, 3) for c in cpu_s]}s")
    assert min(in_flight) > 1000  # the outages hit a stream in full flow
    assert max(cpu_s) < 0.1 * OUTAGE_S  # waiting, not spinning


def cpu_time(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def routed_or_none(r: redis.Redis) -> int | None:
    try:
        return routed(r)
    except redis.ConnectionError:
        return None

"""Proof with real router processes: an ``every_s: 1`` schedule fires every second exactly
once, missing none, while one of three routers is killed with SIGKILL and restarted every
1-2 s for 20 s, and across a Redis outage shorter than its ``grace_s``."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import redis

from tests.helpers import wait_for
from tests.procs import own_redis, routers, url_of

SEEN = "clock/seen"  # no watcher takes from it: every push stays there to be counted
CONFIG = {
    "watchers": [{"input_queue": "global/done"}],
    "schedules": [{"name": "heartbeat", "every_s": 1, "event": "${epoch}", "queue": SEEN}],
}
RUN_S = 20.0
OUTAGE_S = 4.0


def seconds_fired(r: redis.Redis) -> list[int]:
    return sorted(int(v) for v in r.lrange(SEEN, 0, -1))


def test_three_routers_one_killed_and_restarted_fire_every_second_exactly_once(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "rules.json"
    config.write_text(json.dumps(CONFIG))
    rng = random.Random(15)
    with routers(config=config, redis_url=redis_url) as start:
        procs = [start(log=tmp_path / f"router{i}.log", instance=f"r{i}") for i in range(3)]
        wait_for(lambda: len(seconds_fired(r)) >= 2, timeout_s=60, what="the first ticks")
        begin = time.monotonic()
        kills = 0
        while time.monotonic() - begin < RUN_S:
            time.sleep(rng.uniform(1.0, 2.0))
            victim = kills % 3
            procs[victim].kill()
            procs[victim] = start(log=tmp_path / f"router{victim}.log", instance=f"r{victim}")
            kills += 1
        end = seconds_fired(r)[-1]
        wait_for(lambda: seconds_fired(r)[-1] >= end + 2, timeout_s=30, what="ticks go on")
    fired = seconds_fired(r)
    assert len(fired) == len(set(fired)), "a second was fired twice"
    assert fired == list(range(fired[0], fired[-1] + 1)), "a second was missed"
    assert len(fired) >= RUN_S
    assert kills >= 10


def test_ticks_due_during_a_redis_outage_shorter_than_the_grace_fire_late_none_twice(
    tmp_path: Path,
) -> None:
    config = tmp_path / "rules.json"
    config.write_text(json.dumps(CONFIG))
    with own_redis() as server:
        r = redis.Redis.from_url(url_of(server))
        with routers(config=config, redis_url=url_of(server)) as start:
            for i in range(2):
                start(log=tmp_path / f"router{i}.log", instance=f"r{i}")
            wait_for(lambda: len(seconds_fired(r)) >= 2, timeout_s=60, what="the first ticks")
            r.close()
            server.stop()
            time.sleep(OUTAGE_S)
            stopped_at = time.time()
            server.start()
            wait_for(
                lambda: seconds_fired(r) and seconds_fired(r)[-1] >= stopped_at + 2,
                timeout_s=60,
                what="ticks after the outage",
            )
        fired = seconds_fired(r)
        r.close()
    assert len(fired) == len(set(fired)), "a second was fired twice"
    assert fired == list(range(fired[0], fired[-1] + 1)), "a second was missed"

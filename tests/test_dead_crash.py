"""``dead requeue --all`` killed (SIGKILL) half-way through many dead letters, and two
run at once: every event ends either still dead or back on the input list, exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import redis

from resc_dramatiq.rules.batch import FailedEvent
from resc_dramatiq.store.commit import dead_letter_entry
from tests.helpers import wait_for
from tests.procs import CLI, LoggedProcess

#: Dead letters to move: enough that a requeue of all runs for a while.
MANY = 20_000
CONFIG = {"watchers": [{"input_queue": "in", "rules": [{"on": "^x$", "make": {"queue": "o"}}]}]}


def fill(r: redis.Redis, count: int) -> set[bytes]:
    """``count`` dead letters of watcher ``in``, events ``e<i>``; the events."""
    events = [f"e{i}".encode() for i in range(count)]
    pipe = r.pipeline(transaction=False)
    for start in range(0, count, 1000):
        entries = [
            dead_letter_entry(FailedEvent(e, "r", "boom"), watcher="in", attempts=3, at_s=1)
            for e in events[start : start + 1000]
        ]
        pipe.lpush("in/dead", *entries)
    pipe.execute()
    return set(events)


def where(r: redis.Redis) -> Counter[bytes]:
    """How often each event is on the input list or in the dead-letter list."""
    found: Counter[bytes] = Counter(r.lrange("in", 0, -1))
    for entry in r.lrange("in/dead", 0, -1):
        found[json.loads(entry)["event"].encode()] += 1
    return found


def requeue_all(tmp_path: Path, redis_url: str, name: str) -> LoggedProcess:
    config = tmp_path / "rules.json"
    config.write_text(json.dumps(CONFIG))
    argv = [CLI, "dead", "requeue", str(config), "--all", "--redis-url", redis_url]
    return LoggedProcess(argv, log=tmp_path / f"{name}.log")


def test_a_requeue_of_all_killed_half_way_loses_and_doubles_nothing(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    events = fill(r, MANY)
    process = requeue_all(tmp_path, redis_url, "killed")
    try:
        wait_for(lambda: r.llen("in") >= 500, 60, "the requeue under way", poll_s=0.005)
        process.kill()
    finally:
        process.stop()
    moved, left = r.llen("in"), r.llen("in/dead")
    assert 0 < moved < MANY, "killed after it ended: nothing proven"
    assert where(r) == Counter(dict.fromkeys(events, 1))
    assert moved + left == MANY

    again = requeue_all(tmp_path, redis_url, "again")
    assert again.wait(120) == 0
    assert r.llen("in/dead") == 0
    assert Counter(r.lrange("in", 0, -1)) == Counter(dict.fromkeys(events, 1))


def test_two_requeues_of_all_at_once_requeue_each_event_exactly_once(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    events = fill(r, MANY // 4)
    first = requeue_all(tmp_path, redis_url, "first")
    second = requeue_all(tmp_path, redis_url, "second")
    assert (first.wait(120), second.wait(120)) == (0, 0)
    assert r.llen("in/dead") == 0
    assert Counter(r.lrange("in", 0, -1)) == Counter(dict.fromkeys(events, 1))
    said = [int(p.output().split(": ")[1].split()[0]) for p in (first, second)]
    assert sum(said) == len(events)

"""Overlapped rounds: the next batch is computed while the previous one commits.

The commit script owns only the n oldest events of the taken list, so a batch taken
meanwhile (to their left) neither blocks the commit nor is touched by it.
"""

from __future__ import annotations

import threading

import pytest
import redis

from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import OwnershipLost
from resc_dramatiq.router.loop import WatcherLoop
from resc_dramatiq.router.options import RouterOptions
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import commit

RULES = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [{"on": r"^acq/(?P<id>\d+)$", "make": {"task": "trt/${id}", "queue": "out"}}],
        }
    ]
}


def loop_on(r: redis.Redis, batch_size: int = 2) -> WatcherLoop:
    ruleset = RuleSet.compile(Config.from_data(RULES))
    router = Router(
        ruleset=ruleset, client=r, instance="me", options=RouterOptions(batch_size=batch_size)
    )
    return router.loops[0]


def test_a_batch_commits_while_the_next_one_waits_in_the_taken_list(r: redis.Redis) -> None:
    r.rpush("in", "acq/4", "acq/3", "acq/2", "acq/1")  # acq/1 is taken first
    loop = loop_on(r)
    first, second = loop.take(block=False), loop.take(block=False)
    assert first is not None and second is not None
    commit(loop, first)
    assert r.lrange(loop.keys.taken, 0, -1) == [b"acq/4", b"acq/3"]
    commit(loop, second)
    assert r.exists(loop.keys.taken) == 0
    assert r.lrange("out", 0, -1) == [b"trt/4", b"trt/3", b"trt/2", b"trt/1"]


def test_the_later_batch_cannot_commit_before_the_earlier_one(r: redis.Redis) -> None:
    r.rpush("in", "acq/4", "acq/3", "acq/2", "acq/1")
    loop = loop_on(r)
    loop.take(block=False)
    second = loop.take(block=False)
    assert second is not None
    with pytest.raises(OwnershipLost):
        commit(loop, second)
    assert r.llen("out") == 0
    assert r.llen(loop.keys.taken) == 4


def test_a_running_router_overlapping_its_rounds_routes_every_event_once(r: redis.Redis) -> None:
    r.lpush("in", *[f"acq/{i}" for i in range(5000)])
    loop = loop_on(r, batch_size=100)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if r.llen("out") == 5000:
                break
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(10)
    assert sorted(r.lrange("out", 0, -1)) == sorted(f"trt/{i}".encode() for i in range(5000))
    assert r.exists(loop.keys.taken) == 0
    r.connection_pool.disconnect()


def test_a_commit_sent_after_redis_lost_its_scripts_is_loaded_and_runs_once(
    r: redis.Redis,
) -> None:
    r.rpush("in", "acq/2", "acq/1")
    loop = loop_on(r)
    batch = loop.take(block=False)
    assert batch is not None
    r.script_flush()  # what a Redis restart does
    pending = loop.store.commit(batch)
    result = pending.result()
    assert (result.queued, result.repeated) == (2, False)
    assert r.lrange("out", 0, -1) == [b"trt/2", b"trt/1"]
    assert r.exists(loop.keys.taken) == 0


def test_a_sent_commit_whose_reply_is_lost_is_recognised_when_retried(r: redis.Redis) -> None:
    r.rpush("in", "acq/2", "acq/1")
    loop = loop_on(r)
    batch = loop.take(block=False)
    assert batch is not None
    pending = loop.store.commit(batch)
    for _ in range(100):  # the script has run once its tasks are there
        if r.llen("out") == 2:
            break
        threading.Event().wait(0.01)
    pending.sent.connection.disconnect()  # the reply is lost
    with pytest.raises(redis.ConnectionError):
        pending.result()
    assert commit(loop, batch).repeated
    assert r.lrange("out", 0, -1) == [b"trt/2", b"trt/1"]
    assert r.exists(loop.keys.taken) == 0


def test_a_take_in_flight_when_the_loop_stops_is_handed_back_not_lost(r: redis.Redis) -> None:
    events = {f"acq/{i}" for i in range(10)}
    r.lpush("in", *sorted(events))
    loop = loop_on(r, batch_size=2)
    stop = threading.Event()
    loop.round(stop)  # commits one batch, computes one, sends a take
    loop.round(stop)
    assert loop.flight.take is not None and len(loop.flight.batches) == 1
    loop.flight.drop_take()  # what an error or a stop does with it
    loop.store.leave()  # what stopping does next
    routed = {t.decode().replace("trt/", "acq/") for t in r.lrange("out", 0, -1)}
    handed_back = {e.decode() for e in r.lrange("in", 0, -1)}
    assert len(routed) == 4 and routed | handed_back == events
    assert not routed & handed_back
    assert r.exists(loop.keys.taken) == 0

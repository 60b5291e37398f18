"""What the router does when things go wrong between take and commit, in process.

Several ``Router`` objects on one real Redis play the instances of a fleet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from resc_dramatiq import Observer, Router, RouterOptions
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import OwnershipLost
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import commit, wait_for


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    """Routers and worker threads open more connections on ``r``: close them after."""
    yield
    r.connection_pool.disconnect()


DONE = "global/done"
RULES = RuleSet.compile(
    Config.from_data(
        {
            "watchers": [
                {
                    "input_queue": DONE,
                    "rules": [
                        {
                            "on": r"^acq/(?P<p>\d+)$",
                            "make": [
                                {"task": "trt/${p}", "queue": "trt", "set": "todo/${p}"},
                                {"task": "log/${p}", "queue": "log"},  # no set: no dedup
                            ],
                        }
                    ],
                }
            ]
        }
    )
)


def router(r: redis.Redis, instance: str, heartbeat_ttl_s: float = 6.0) -> Router:
    options = RouterOptions(heartbeat_ttl_s=heartbeat_ttl_s, block_s=0.2)
    return Router(ruleset=RULES, client=r, instance=instance, options=options)


@contextmanager
def running(target: Router) -> Iterator[Router]:
    thread = threading.Thread(target=target.run, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        target.stop()
        thread.join(10)
        assert not thread.is_alive()


def test_a_zombie_whose_events_were_reclaimed_gets_ownership_lost_and_queues_nothing(
    r: redis.Redis,
) -> None:
    zombie, live = router(r, "zombie", heartbeat_ttl_s=0.1), router(r, "live")
    r.lpush(DONE, "acq/1", "acq/2")
    zombie.heartbeat()
    batch = zombie.loops[0].take(block=False)
    assert batch is not None and len(batch.events) == 2
    time.sleep(0.15)  # the zombie stalls past its heartbeat
    live.heartbeat()  # sees it expired and hands its events back
    assert live.run_until_idle() == 2
    with pytest.raises(OwnershipLost):
        commit(zombie.loops[0], batch)
    assert r.lrange("log", 0, -1) == [b"log/2", b"log/1"]
    assert r.lrange("trt", 0, -1) == [b"trt/2", b"trt/1"]


def test_a_live_instance_is_not_reclaimed(r: redis.Redis) -> None:
    busy, other = router(r, "busy"), router(r, "other")
    r.lpush(DONE, "acq/1")
    busy.heartbeat()
    batch = busy.loops[0].take(block=False)
    assert batch is not None
    other.heartbeat()
    assert other.run_until_idle() == 0
    commit(busy.loops[0], batch)
    assert r.lrange("log", 0, -1) == [b"log/1"]


def test_a_commit_retried_after_its_reply_was_lost_writes_nothing_twice(
    r: redis.Redis,
) -> None:
    loop = router(r, "a").loops[0]
    r.lpush(DONE, "acq/1")
    batch = loop.take(block=False)
    assert batch is not None
    first = commit(loop, batch)
    again = commit(loop, batch)  # what the loop does when the first reply never came
    assert again.repeated and not first.repeated
    assert (again.queued, again.deduplicated) == (first.queued, first.deduplicated) == (2, 0)
    assert r.lrange("log", 0, -1) == [b"log/1"]
    assert r.hget(f"{DONE}/stats", "events") == b"1"


@pytest.mark.parametrize("client_retries", [False, True], ids=["error-seen", "retried-by-client"])
def test_an_event_stranded_by_an_unanswered_take_is_handed_back_and_routed_once(
    r: redis.Redis,
    redis_url: str,
    client_retries: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a client that retries a dropped connection by itself (redis-py 6+ does by default,
    # 5.x only when told), or one that lets the router see the error
    retry = Retry(NoBackoff(), 3 if client_retries else 0)
    client = redis.Redis.from_url(redis_url, retry=retry, retry_on_error=[redis.ConnectionError])
    with running(router(client, "a")) as a:
        taken = a.loops[0].keys.taken
        wait_for(lambda: blocked_clients(r), what="the router waits in BLMOVE")
        # the server moved an event but the answer died with the connection:
        r.lpush(taken, "acq/9")
        for client_id in blocked_clients(r):
            r.client_kill_filter(_id=client_id)
        wait_for(lambda: r.lrange("log", 0, -1) == [b"log/9"], what="acq/9 routed")
        assert r.llen(taken) == 0
    client.close()
    assert r.lrange("trt", 0, -1) == [b"trt/9"]
    assert any("unreachable" in line for line in caplog.messages) is not client_retries


def blocked_clients(r: redis.Redis) -> list[str]:
    return [str(c["id"]) for c in r.client_list() if c.get("cmd") == "blmove"]


def test_an_instance_leaving_hands_its_taken_list_back_before_deregistering(
    r: redis.Redis,
) -> None:
    with running(router(r, "a")) as a:
        keys = a.loops[0].keys
        wait_for(lambda: r.zscore(keys.instances, "a"), what="a registered")
        wait_for(lambda: blocked_clients(r), what="the router waits in BLMOVE")
        r.lpush(keys.taken, "acq/5")  # a stray the loop never saw
    assert r.zscore(keys.instances, "a") is None
    assert r.lrange(DONE, 0, -1) == [b"acq/5"]  # first in line for the next router
    assert r.llen(keys.taken) == 0


def test_a_restarted_instance_routes_what_its_previous_life_had_taken(
    r: redis.Redis,
) -> None:
    r.lpush(DONE, "acq/1", "acq/2")
    before = router(r, "a").loops[0]
    assert before.take(block=False) is not None  # then the process died
    assert router(r, "a").run_until_idle() == 2
    assert r.lrange("log", 0, -1) == [b"log/2", b"log/1"]


def test_events_in_a_resc_routers_taken_list_are_routed_after_migration(
    r: redis.Redis,
) -> None:
    r.lpush(f"{DONE}/taken", "acq/3")  # left behind by resc itself
    assert router(r, "a").run_until_idle() == 1
    assert r.lrange("log", 0, -1) == [b"log/3"]


class BatchSizes(Observer):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def batch_committed(self, watcher: str, events: int, *args: object) -> None:
        self.sizes.append(events)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_batch_never_exceeds_the_batch_size_even_after_a_blocking_take(
    r: redis.Redis, batch_size: int
) -> None:
    sizes = BatchSizes()
    options = RouterOptions(batch_size=batch_size, block_s=0.2)
    a = Router(ruleset=RULES, client=r, instance="a", options=options, observer=sizes)
    with running(a):
        wait_for(lambda: blocked_clients(r), what="the router waits in BLMOVE")
        r.lpush(DONE, *[f"acq/{i}" for i in range(10)])  # one command: all arrive at once
        wait_for(lambda: sum(sizes.sizes) == 10, what="all routed")
    assert max(sizes.sizes) == batch_size


def test_a_watcher_registers_its_instance_before_its_first_take(r: redis.Redis) -> None:
    """Else an instance dying between its first take and its first heartbeat would be
    unknown to the others, and its events stranded for good."""
    loop, stop = router(r, "early").loops[0], threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))  # no heartbeat thread at all
    thread.start()
    try:
        wait_for(lambda: blocked_clients(r), what="the watcher waits in BLMOVE")
        assert r.zscore(loop.keys.instances, "early") is not None
    finally:
        stop.set()
        thread.join(10)


def test_a_loop_run_until_idle_hands_back_and_routes_a_stray_that_appears_while_it_runs(
    r: redis.Redis,
) -> None:
    """The production loop's stray hand-back, in one ``run(until_idle=True)``: an event in
    the taken list that the loop does not hold (a take whose answer was lost and that
    the client retried by itself) is handed back when the watcher finds nothing to take,
    and routed before the run returns."""
    a = router(r, "a")
    loop = a.loops[0]
    take = loop.take

    def take_and_leave_a_stray(*, block: bool) -> object:
        batch = take(block=block)
        if batch is None and not r.exists("stray/left"):
            r.set("stray/left", 1)
            r.lpush(loop.keys.taken, "acq/9")  # appears behind the loop's back
            return take(block=block)  # still nothing to take: handed back, then routed
        return batch

    loop.take = take_and_leave_a_stray  # type: ignore[method-assign]
    r.lpush(DONE, "acq/1")
    assert loop.run(threading.Event(), until_idle=True) == 2
    assert sorted(r.lrange("log", 0, -1)) == [b"log/1", b"log/9"]
    assert r.llen(loop.keys.taken) == 0 and r.llen(DONE) == 0

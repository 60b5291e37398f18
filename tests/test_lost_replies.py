"""Lost replies: a command runs in Redis, its reply never reaches the router.

A router whose Redis connection goes through :class:`~tests.lossy_proxy.LossyProxy`
loses 15 % of the replies of its scripts (take, commit, heartbeat, leave). Every event
makes two tasks, one guarded by a dedup set and one without: a commit redone after its
reply was lost would queue the second one twice, and a take whose reply was lost would
strand its events, unless the router recognises both.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pytest_redis.executor import RedisExecutor
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.helpers import wait_for
from tests.lossy_proxy import LossyProxy
from tests.procs import RouterProcess

EVENTS = 3000
LOSS = 0.15  # of script replies: ~40 of ~275 lost (at 10 %, ~25: too near the floor of 20)
CHUNKS = 6
CONFIG = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [
                {
                    "on": r"^ev/(?P<n>\d+)$",
                    "make": [
                        {"task": "a/${n}", "queue": "out/a", "set": "out/a/set"},
                        {"task": "b/${n}", "queue": "out/b"},
                    ],
                }
            ],
        }
    ]
}


@pytest.fixture
def upstream(redis_proc: RedisExecutor, r: redis.Redis) -> tuple[str, int]:
    """Address of the session's Redis, flushed for this test."""
    return redis_proc.host, redis_proc.port


def through(proxy: LossyProxy, protocol: int = 3) -> redis.Redis:
    """A client of the proxy that does not retry: each lost reply is its error."""
    return redis.Redis.from_url(proxy.url, protocol=protocol, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def closing() -> Iterator[list[redis.Redis]]:
    """Clients appended here are closed after the test."""
    clients: list[redis.Redis] = []
    yield clients
    for client in clients:
        client.close()
        client.connection_pool.disconnect()


@pytest.mark.parametrize("protocol", [2, 3])
def test_pipelined_commands_through_the_proxy_get_their_own_replies(
    upstream: tuple[str, int], closing: list[redis.Redis], protocol: int
) -> None:
    with LossyProxy(upstream=upstream, drop={"EVALSHA"}, probability=0.0) as proxy:
        client = through(proxy, protocol)
        closing.append(client)
        pipe = client.pipeline(transaction=False)
        for i in range(500):
            pipe.rpush("l", *[f"v{i}/{j}" for j in range(i % 7)], "x")
            pipe.get("missing")
            pipe.hset("h", f"f{i}", "v" * (i * 37))
            pipe.eval("return {1, {KEYS[1], {ARGV[1]}}, redis.status_reply('OK')}", 1, "k", i)
        replies = pipe.execute()
        assert client.hgetall("h")[b"f499"] == b"v" * (499 * 37)
        tx = client.pipeline(transaction=True)
        assert tx.incr("n").incr("n").execute() == [1, 2]
    assert replies[4 * 499 :] == [
        sum(k % 7 + 1 for k in range(500)),
        None,
        1,
        [1, [b"k", [b"499"]], b"OK"],
    ]
    assert proxy.seen["EVAL"] == 500 and proxy.seen["EXEC"] == 1
    assert proxy.dropped == Counter()
    assert not [t for t in threading.enumerate() if t.name.startswith("lossy-")]


def test_a_dropped_eval_ran_but_its_client_got_a_connection_error(
    upstream: tuple[str, int], r: redis.Redis, closing: list[redis.Redis]
) -> None:
    with LossyProxy(upstream=upstream, drop={"EVAL"}, max_drops=1) as proxy:
        client = through(proxy)
        closing.append(client)
        with pytest.raises(redis.ConnectionError):
            client.eval("return redis.call('INCR', KEYS[1])", 1, "ran")
        assert r.get("ran") == b"1"  # the script ran: only its reply was lost
        assert client.eval("return redis.call('INCR', KEYS[1])", 1, "ran") == 2  # cap reached
    assert proxy.dropped == Counter({"EVAL": 1})


def test_replies_before_a_dropped_one_arrive_and_none_after_it(upstream: tuple[str, int]) -> None:
    """Inline commands, pipelined: PING, EVAL (its reply lost), PING."""
    with (
        LossyProxy(upstream=upstream, drop={"EVAL"}) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s,
    ):
        s.sendall(b'PING\r\nEVAL "return 7" 0\r\nPING\r\n')
        received = b""
        while chunk := s.recv(1024):  # until the proxy closes the connection
            received += chunk
    assert received == b"+PONG\r\n"
    assert proxy.seen == Counter({"PING": 2, "EVAL": 1})


def test_a_router_losing_script_replies_queues_each_task_exactly_once(
    upstream: tuple[str, int], r: redis.Redis, tmp_path: Path
) -> None:
    config = tmp_path / "lossy.json"
    config.write_text(json.dumps(CONFIG))
    started = time.monotonic()
    with LossyProxy(upstream=upstream, drop={"EVALSHA", "EVAL"}, probability=LOSS, seed=5) as proxy:
        router = RouterProcess(
            config=config, redis_url=proxy.url, log=tmp_path / "router.log", instance="lossy"
        )
        try:
            per_chunk = EVENTS // CHUNKS
            for first in range(0, EVENTS, per_chunk):
                r.lpush("in", *[f"ev/{n}" for n in range(first, first + per_chunk)])
                wait_for(lambda f=first: r.llen("out/b") > f, timeout_s=30, what="routing")
            wait_for(lambda: r.llen("out/b") >= EVENTS, timeout_s=60, what="all tasks queued")
            wait_for(lambda: not in_flight(r), timeout_s=15, what="nothing left in flight")
            assert_each_task_exactly_once(r)
            assert router.signal(signal.SIGTERM) == 0, router.output()
        finally:
            router.stop()
    assert_each_task_exactly_once(r)  # once it is gone, no late duplicate can land
    drops = proxy.dropped
    print(
        f"\n{drops.total()} replies lost ({dict(drops)}) of {dict(proxy.seen)} commands; "
        f"{time.monotonic() - started:.1f} s"
    )
    assert drops.total() >= 20  # the run really went through lost replies


def in_flight(r: redis.Redis) -> list[bytes]:
    """Events still in the input list or in a taken list."""
    events: list[bytes] = r.lrange("in", 0, -1)  # type: ignore[assignment]
    for key in r.scan_iter("in/taken*"):
        if r.type(key) == b"list":
            events += r.lrange(key, 0, -1)  # type: ignore[arg-type]
    return events


def assert_each_task_exactly_once(r: redis.Redis) -> None:
    """Both tasks of every event queued once; nothing in flight, nothing dead-lettered."""
    for name in ("a", "b"):
        tasks = Counter(t.decode() for t in r.lrange(f"out/{name}", 0, -1))
        doubled = sorted(t for t, c in tasks.items() if c > 1)
        missing = sorted({f"{name}/{n}" for n in range(EVENTS)} - set(tasks))
        assert not doubled and not missing, (
            f"out/{name}: {len(doubled)} doubled {doubled[:10]}, "
            f"{len(missing)} missing {missing[:10]}"
        )
        assert tasks == Counter(f"{name}/{n}" for n in range(EVENTS))
    assert r.zcard("out/a/set") == EVENTS
    assert in_flight(r) == []
    assert r.llen("in/dead") == 0

"""Effectively once on the worker side: lost replies and a worker killed before its ack.

A worker routing inline writes a message's done event, its tasks and the message's
marker in one atomic step. Retried after a lost reply, or run again for the same
message redelivered after its worker was killed between the write and the ack, the
step finds the marker and writes nothing: follow-up tasks exist exactly once, also for
targets without a dedup set.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from pytest_redis.executor import RedisExecutor

from resc_dramatiq import Completion
from resc_dramatiq.store.events import emit
from resc_dramatiq.store.keys import message_markers
from resc_dramatiq.store.scripts import Scripts
from tests.helpers import wait_for
from tests.lossy_proxy import LossyProxy
from tests.procs import LoggedProcess

DONE = "global/done"
RUNS, ARMED, VICTIM = "shop/runs", "kill/armed", "kill/victim"  # as in tests/inline_shop.py
MESSAGES = 1_000
LOSS = 0.1
RULES = {
    "watchers": [
        {
            "input_queue": DONE,
            "rules": [
                {
                    "on": r"^acq/(?P<n>\d+)$",
                    "make": [
                        {"task": "raw/${n}", "queue": "raw/out"},  # no dedup set
                        {"actor": "treat", "queue": "treat", "task": "treat/${n}"},  # none either
                    ],
                }
            ],
        }
    ]
}


@pytest.fixture
def upstream(redis_proc: RedisExecutor, r: redis.Redis) -> tuple[str, int]:
    """The test server's address (flushed for this test)."""
    return redis_proc.host, redis_proc.port


def test_a_worker_routing_inline_through_lost_replies_queues_each_task_once(
    upstream: tuple[str, int], r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    with LossyProxy(upstream=upstream, drop={"EVALSHA", "EVAL"}, probability=LOSS, seed=3) as proxy:
        lossy = redis.Redis.from_url(proxy.url)
        broker = RedisBroker(url=redis_url)
        broker.add_middleware(Completion(client=lossy, rules=rules, attempts=20), before=Retries)

        @dramatiq.actor(broker=broker, queue_name="acquire", done_event="acq/${n}")
        def acquire(n: str) -> None:
            r.hincrby(RUNS, f"acquire/{n}", 1)

        @dramatiq.actor(broker=broker, queue_name="treat")
        def treat(n: str) -> None:
            r.hincrby(RUNS, f"treat/{n}", 1)

        worker = dramatiq.Worker(broker, worker_threads=8)
        worker.start()
        try:
            for n in range(MESSAGES):
                acquire.send(str(n))
            wait_for(lambda: r.hlen(RUNS) == 2 * MESSAGES, timeout_s=90, what="every run")
            broker.join("acquire", timeout=30_000)
            broker.join("treat", timeout=30_000)
        finally:
            worker.stop()
            broker.close()
            lossy.close()
    runs = {k.decode(): int(v) for k, v in r.hgetall(RUNS).items()}
    twice = sorted(k for k, v in runs.items() if v > 1 and k.startswith("treat/"))
    assert twice == [], f"{len(twice)} follow-up messages ran more than once: {twice[:10]}"
    raw = Counter(t.decode() for t in r.lrange("raw/out", 0, -1))
    assert raw == Counter(f"raw/{n}" for n in range(MESSAGES))
    assert r.llen(DONE) == 0  # every done event was routed inline, none left to a router
    assert [k for k in r.scan_iter(f"{DONE}/taken*") if r.type(k) == b"list"] == []
    drops = proxy.dropped.total()
    print(f"\n{drops} replies lost of {proxy.seen['EVALSHA']} EVALSHA")
    assert drops >= 20  # the run really went through lost replies


@pytest.fixture
def worker_processes(redis_url: str, tmp_path: Path) -> Iterator[list[LoggedProcess]]:
    """Stock ``dramatiq tests.inline_shop`` processes; each process group ended after."""
    started: list[LoggedProcess] = []

    def start(name: str, *queues: str) -> LoggedProcess:
        dramatiq_cli = str(Path(sys.executable).parent / "dramatiq")
        root = Path(__file__).parent.parent
        env = {**os.environ, "RESC_TEST_REDIS_URL": redis_url, "PYTHONPATH": str(root)}
        args = [dramatiq_cli, "tests.inline_shop", "--processes", "1", "--threads", "2"]
        args += ["--queues", *queues] if queues else []
        proc = LoggedProcess(
            args, log=tmp_path / f"{name}.log", cwd=root, env=env, start_new_session=True
        )
        started.append(proc)
        wait_for(lambda: "ready for action" in proc.output(), timeout_s=30, what=f"{name} up")
        return proc

    yield start  # type: ignore[misc]
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait(timeout=10)


def test_a_worker_killed_between_the_done_write_and_the_ack_sends_the_follow_up_once(
    r: redis.Redis, worker_processes: object
) -> None:
    # the treats run in a worker of their own: a treat the victim was running when it
    # was killed would run again (at least once, as Dramatiq promises), which says
    # nothing of how often it was sent
    start = worker_processes
    start("a", "acquire")  # type: ignore[operator]
    start("b", "acquire")  # type: ignore[operator]
    start("c", "treat")  # type: ignore[operator]
    r.set(ARMED, "1")
    producer = RedisBroker(client=r)

    @dramatiq.actor(broker=producer, queue_name="acquire")
    def acquire(n: str) -> None:
        """The producer's handle on the workers' actor (never run here)."""

    for n in range(20):
        acquire.send(str(n))
    victim = wait_for(lambda: r.get(VICTIM), timeout_s=30, what="a worker killed").decode()
    wait_for(lambda: not r.exists(ARMED), timeout_s=5)
    treats = {f"treat/{n}" for n in range(20)}

    def settled() -> bool:
        runs = {k.decode(): int(v) for k, v in r.hgetall(RUNS).items()}
        return treats <= set(runs) and runs.get(f"acquire/{victim}") == 2

    started = time.monotonic()
    wait_for(settled, timeout_s=30, what="the victim's message run again and every treat")
    time.sleep(0.5)  # a duplicate treat, if any, would run within this margin
    runs = {k.decode(): int(v) for k, v in r.hgetall(RUNS).items()}
    assert runs[f"acquire/{victim}"] == 2  # the actor ran twice: at least once, as promised
    assert {k: v for k, v in runs.items() if k.startswith("treat/")} == dict.fromkeys(treats, 1)
    assert r.llen(DONE) == 0
    print(
        f"\nkilled after writing acquire/{victim}'s done event; settled in "
        f"{time.monotonic() - started:.1f} s"
    )


def test_an_event_is_written_once_per_message_and_old_markers_are_forgotten(
    r: redis.Redis,
) -> None:
    scripts = Scripts(r)

    def write(message_id: str) -> bool:
        return emit(
            scripts,
            markers=message_markers(DONE),
            queue=DONE,
            event=f"ev/{message_id}",
            message_id=message_id,
            release_set=None,
            marker_ttl_ms=100,
        )

    assert write("m1") and not write("m1")  # a retry, or a redelivered message
    time.sleep(0.15)
    assert write("m2")  # forgets m1's marker, older than its time to live
    assert r.zrange(message_markers(DONE), 0, -1) == [b"m2"]
    assert r.lrange(DONE, 0, -1) == [b"ev/m2", b"ev/m1"]

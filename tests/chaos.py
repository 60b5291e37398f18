"""The soak harness: a rule chain under kill -9 of routers and a Redis stop.

The chain runs on a Redis of its own (append-only file on), with router processes and
Dramatiq worker processes (a real ``dramatiq.Worker`` on ``RedisBroker`` with
``Completion``):

* stage 1, every event ``acq/<n>``: raw ``trt/<n>`` (dedup set ``trt/todo``) and raw
  ``log/<n>`` (no set: a repeated or half-done commit would show as a duplicate);
* every event whose number ends in ``actor_zeros`` zeros also sends the actor ``check``
  (dedup set ``chk/todo``); the worker counts its runs (``HINCRBY chaos/runs chk/<n>``)
  and Completion emits the done event ``chk/<n>`` onto the router's input;
* stage 2, ``chk/<n>``: raw ``fin/<n>`` (dedup set ``fin/todo``).

While a producer pushes the events, the chaos loop SIGKILLs a random router every
``kill_every_s`` and restarts it (every other restart under a new name, so both the
own-list recovery at start and the heartbeat reclaim run) and stops Redis once. Then
it waits (bounded) for quiescence and checks every task. Every wait is bounded.

``python -m tests.chaos worker URL`` is the worker process (see ``worker_main``).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.helpers import wait_for
from tests.procs import (
    LoggedProcess,
    RouterProcess,
    own_redis,
    routers,
    url_of,
    work_until_sigterm,
)

INPUT = "global/done"
RUNS = "chaos/runs"
STARTS = "chaos/starts"
RELEASE = "chaos/release"


def chain_config(actor_zeros: int) -> dict[str, Any]:
    """The two-stage rule chain; events ending in ``actor_zeros`` zeros go to Dramatiq."""
    actor = {"actor": "check", "queue": "chaos", "task": "chk/${n}", "set": "chk/todo"}
    stage_1 = [
        {"task": "trt/${n}", "queue": "trt", "set": "trt/todo"},
        {"task": "log/${n}", "queue": "log"},
    ]
    multiple = rf"^acq/(?P<n>0|[1-9]\d*0{{{actor_zeros}}})$"  # of 10**actor_zeros
    rules = [
        {"name": "stage 1", "on": r"^acq/(?P<n>\d+)$", "make": stage_1},
        {"name": "stage 1 actor", "on": multiple, "make": actor},
        {
            "name": "stage 2",
            "on": r"^chk/(?P<n>\d+)$",
            "make": {"task": "fin/${n}", "queue": "fin", "set": "fin/todo"},
        },
    ]
    return {"watchers": [{"input_queue": INPUT, "rules": rules}]}


@dataclass(frozen=True)
class SoakPlan:
    """The size and the faults of one soak run."""

    events: int = 5_000
    produce_s: float = 8.0  # the events are spread over this time
    routers: int = 3
    workers: int = 2
    actor_zeros: int = 1  # 1: every 10th event goes through Dramatiq
    kill_every_s: tuple[float, float] = (2.0, 4.0)
    redis_stop_s: float = 2.0
    redis_stop_at: float = 0.4  # fraction of produce_s
    quiesce_timeout_s: float = 40.0
    seed: int = 1

    @property
    def actor_events(self) -> list[int]:
        """Numbers of the events that also make a Dramatiq message."""
        return list(range(0, self.events, 10**self.actor_zeros))


@dataclass
class Figures:
    """What a soak run did and measured."""

    events: int = 0
    messages: int = 0
    tasks: int = 0
    routed: int = 0
    kills: int = 0
    redis_stops: int = 0
    worker_restarts: int = 0
    duration_s: float = 0.0
    quiesce_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        """The figures, one line each."""
        rate = self.routed / self.duration_s if self.duration_s else 0.0
        lines = [
            f"events pushed:           {self.events}",
            f"Dramatiq messages run:   {self.messages}",
            f"tasks queued (raw):      {self.tasks}",
            f"events routed (stats):   {self.routed}",
            f"router kills (SIGKILL):  {self.kills}",
            f"Redis stops:             {self.redis_stops}",
            f"worker restarts:         {self.worker_restarts}",
            f"duration:                {self.duration_s:.1f} s (quiescence {self.quiesce_s:.1f} s)",
            f"throughput:              {rate:.0f} routed events/s overall",
        ]
        return "\n".join(lines)


class Soak:
    """One run of a ``SoakPlan`` in ``workdir``."""

    def __init__(self, *, plan: SoakPlan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.rng = random.Random(plan.seed)
        self.figures = Figures(events=plan.events)
        self.redis_up = threading.Lock()  # the producer never pushes across a stop
        self.produced = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> Figures:
        """Run the chain under chaos, wait for quiescence, check; return the figures."""
        config = self.workdir / "chain.json"
        config.write_text(json.dumps(chain_config(self.plan.actor_zeros)))
        started = time.monotonic()
        with ExitStack() as stack:
            server = stack.enter_context(own_redis())
            url = url_of(server)
            r = redis.Redis.from_url(url)
            stack.callback(r.close)
            start = stack.enter_context(
                routers(config=config, redis_url=url, heartbeat_ttl_s=2, batch=200)
            )
            fleet = [
                start(instance=f"r{i}", log=self.workdir / f"r{i}.log")
                for i in range(self.plan.routers)
            ]
            workers = [self.worker(url, i, stack) for i in range(self.plan.workers)]
            producer = threading.Thread(target=self.produce, args=(r,), daemon=True)
            producer.start()
            self.chaos(server, fleet, start, r)
            producer.join(timeout=60)
            if self.failure is not None:
                raise self.failure
            self.figures.worker_restarts = self.revive(workers, url, stack)
            quiet_from = time.monotonic()
            try:
                wait_for(self.quiet_in(r), timeout_s=self.plan.quiesce_timeout_s, poll_s=0.2)
            except AssertionError as e:
                raise AssertionError(f"{e}: no quiescence: {self.progress(r)}") from None
            self.figures.quiesce_s = time.monotonic() - quiet_from
            self.figures.duration_s = time.monotonic() - started
            self.check(r)
        return self.figures

    def produce(self, r: redis.Redis) -> None:
        """Push the events in chunks spread over ``produce_s`` (never across a stop)."""
        try:
            chunks = max(1, int(self.plan.produce_s / 0.05))
            size = -(-self.plan.events // chunks)
            begin = time.monotonic()
            for k, first in enumerate(range(0, self.plan.events, size)):
                chunk = [f"acq/{i}" for i in range(first, min(first + size, self.plan.events))]
                with self.redis_up:
                    wait_for(lambda c=chunk: push(r, c), timeout_s=30, what="a push")
                pause = begin + (k + 1) * self.plan.produce_s / chunks - time.monotonic()
                time.sleep(max(0.0, pause))
        except BaseException as error:
            self.failure = error
        finally:
            self.produced.set()

    def chaos(self, server: Any, fleet: list[RouterProcess], start: Any, r: redis.Redis) -> None:
        """Kill -9 and restart routers until the events are pushed; stop Redis once."""
        stop_at = time.monotonic() + self.plan.redis_stop_at * self.plan.produce_s
        generation = 0
        deadline = time.monotonic() + self.plan.produce_s + 60
        while not self.produced.is_set() or self.figures.redis_stops == 0:
            assert time.monotonic() < deadline, "the producer did not finish"
            self.produced.wait(self.rng.uniform(*self.plan.kill_every_s))
            if self.figures.redis_stops == 0 and time.monotonic() >= stop_at:
                self.stop_redis(server, r)
                continue
            victim = self.rng.randrange(len(fleet))
            fleet[victim].kill()
            self.figures.kills += 1
            generation += 1
            name = f"r{victim}" if generation % 2 else f"r{victim}-{generation}"
            fleet[victim] = start(instance=name, log=self.workdir / f"r{victim}.log")

    def stop_redis(self, server: Any, r: redis.Redis) -> None:
        """Stop Redis for ``redis_stop_s`` and start it again (same port, same data)."""
        with self.redis_up:
            server.stop()
            r.connection_pool.disconnect()
            time.sleep(self.plan.redis_stop_s)
            server.start()
            wait_for(lambda: ping(r), timeout_s=30, what="Redis loaded its data again")
        self.figures.redis_stops += 1

    def worker(self, url: str, index: int, stack: ExitStack) -> WorkerProcess:
        process = WorkerProcess(url=url, log=self.workdir / f"w{index}.log")
        stack.callback(process.stop)
        return process

    def revive(self, workers: list[WorkerProcess], url: str, stack: ExitStack) -> int:
        """Restart the workers that died (they should not); return how many."""
        dead = [i for i, w in enumerate(workers) if w.proc.poll() is not None]
        for i in dead:
            workers[i] = self.worker(url, len(workers) + i, stack)
        return len(dead)

    def expected(self) -> dict[str, Counter[str]]:
        n, chk = range(self.plan.events), self.plan.actor_events
        return {
            "trt": Counter(f"trt/{i}" for i in n),
            "log": Counter(f"log/{i}" for i in n),
            "fin": Counter(f"fin/{i}" for i in chk),
        }

    def progress(self, r: redis.Redis) -> str:
        lengths = {q: r.llen(q) for q in ("trt", "log", "fin", INPUT)}
        return f"lists {lengths}, runs {r.hlen(RUNS)}, taken {taken_lists(r)}"

    def quiet_in(self, r: redis.Redis) -> Any:
        """A predicate: every expected task is there and nothing is in flight."""
        return lambda: self.quiet(r)

    def quiet(self, r: redis.Redis) -> bool:
        """Every expected task is there and nothing is in flight."""
        try:
            done = all(r.llen(q) >= len(c) for q, c in self.expected().items())
            return done and r.llen(INPUT) == 0 and not taken_lists(r)
        except redis.ConnectionError:
            return False

    def check(self, r: redis.Redis) -> None:
        """Exactly once everywhere; no leftovers; record the figures."""
        for queue, expected in self.expected().items():
            got = Counter(t.decode() for t in r.lrange(queue, 0, -1))
            assert got == expected, f"{queue}: {describe(got, expected)}"
        runs = Counter({k.decode(): int(v) for k, v in r.hgetall(RUNS).items()})
        once = Counter({f"chk/{i}": 1 for i in self.plan.actor_events})
        assert runs == once, f"Dramatiq runs: {describe(runs, once)}"
        assert r.llen(f"{INPUT}/dead") == 0, r.lrange(f"{INPUT}/dead", 0, 3)
        assert r.llen(f"{INPUT}/failed") == 0, r.lrange(f"{INPUT}/failed", 0, 3)
        assert r.zcard("dramatiq:chaos.XQ") == 0, "Dramatiq dead-lettered messages"
        assert not taken_lists(r)
        self.figures.messages = sum(runs.values())
        self.figures.tasks = sum(r.llen(q) for q in ("trt", "log", "fin"))
        self.figures.routed = int(r.hget(f"{INPUT}/stats", "events") or 0)


def push(r: redis.Redis, events: list[str]) -> bool:
    """LPUSH ``events``; False when Redis refused the connection or is still loading.

    Pushes never cross a Redis stop (``redis_up``), so these errors mean "not executed"
    and a retried push is never doubled.
    """
    try:
        r.lpush(INPUT, *events)
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False
    return True


def ping(r: redis.Redis) -> bool:
    """True when Redis answers (and has loaded its data)."""
    try:
        return bool(r.ping())
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False


def taken_lists(r: redis.Redis) -> list[bytes]:
    """Keys matching ``*/taken/*`` that are non-empty lists."""
    return [k for k in r.scan_iter("*/taken/*", count=1000) if r.type(k) == b"list"]


def describe(got: Counter[str], expected: Counter[str]) -> str:
    missing = list((expected - got).items())[:5]
    extra = list((got - expected).items())[:5]
    return f"{len(expected - got)} missing {missing}, {len(got - expected)} extra {extra}"


class WorkerProcess(LoggedProcess):
    """``python -m tests.chaos worker URL``: a Dramatiq worker process logging to ``log``.

    ``kill()`` (SIGKILL) leaves the message in hand neither acked nor requeued.
    """

    stop_timeout_s = 15.0

    def __init__(self, *, url: str, log: Path, hold: bool = False, fast: bool = False) -> None:
        args = [sys.executable, "-m", "tests.chaos", "worker", url]
        args += ["--hold"] * hold + ["--fast"] * fast
        root = Path(__file__).parent.parent
        env = {**os.environ, "PYTHONPATH": str(root)}
        super().__init__(args, log=log, cwd=root, env=env)


def worker_main(argv: list[str]) -> int:
    """The worker process: ``worker URL [--hold] [--fast]``; runs until SIGTERM.

    ``check`` counts its runs; ``hold`` (``--hold``) counts its starts, then waits
    (bounded) for the key ``chaos/release`` before counting its run. ``--fast`` adds
    ``Redelivery`` with a 3 s heartbeat timeout.
    """
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import Retries

    from resc_dramatiq.worker.completion import Completion
    from resc_dramatiq.worker.redelivery import Redelivery

    url, hold, fast = argv[1], "--hold" in argv, "--fast" in argv
    broker = RedisBroker(url=url)
    broker.add_middleware(Completion(done_queue=INPUT, attempts=12), before=Retries)
    if fast:
        broker.add_middleware(Redelivery(heartbeat_timeout_ms=3_000, interval_ms=500))
    client: redis.Redis = broker.client
    # A run's count rides out the Redis stop: an actor that raised while Redis is down
    # is lost by Dramatiq itself (Retries cannot enqueue the retry, and the message is
    # acked), which is not what this soak tests. Retried, the count is once per run (a
    # token drawn when the run starts), so a count whose reply was lost is not counted
    # twice, while a second run of one message, or two messages for one task, still
    # count twice.
    count_once = client.register_script(
        "if redis.call('SET', KEYS[1], 1, 'NX', 'EX', 3600) then "
        "return redis.call('HINCRBY', KEYS[2], ARGV[1], 1) end return 0"
    )

    def count_run(field: str) -> None:
        run = uuid.uuid4().hex
        deadline = time.monotonic() + 30
        while True:
            try:
                count_once(keys=[f"chaos/ran/{run}", RUNS], args=[field])
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @dramatiq.actor(broker=broker, queue_name="chaos", min_backoff=100, max_backoff=1000)
    def check(n: str) -> None:
        count_run(f"chk/{n}")

    @dramatiq.actor(
        broker=broker, actor_name="hold", queue_name="hold", min_backoff=100, max_backoff=1000
    )
    def hold_(n: str) -> None:
        client.hincrby(STARTS, f"hold/{n}", 1)
        deadline = time.monotonic() + 60
        while not client.exists(RELEASE) and time.monotonic() < deadline:
            time.sleep(0.02)
        client.hincrby(RUNS, f"hold/{n}", 1)

    del check, hold_  # declared on the broker; the worker finds them there
    return work_until_sigterm(broker, threads=1 if hold else 4)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))

"""What the Dramatiq pipeline soaks share: a Redis of their own, real worker processes,
router processes or in-worker routing, a lossy proxy, a producer and the kill loop.

A soak (``tests/joins_chaos.py``, ``tests/data_chaos.py``) subclasses
:class:`PipelineSoak` and says what its pipeline is: its config (``config``), the
Dramatiq messages its producer sends (``messages``), the command of its worker process
(``worker_module``, ``worker_args``), when it is done (``finished``) and what it checks
(``check``). :meth:`PipelineSoak.run` does the rest:

* ``Mode.ROUTERS``: ``plan.routers`` router processes, one SIGKILLed every
  ``kill_every_s`` and restarted at once (every other restart under a new name, so both
  the own-list recovery at start and the heartbeat reclaim by another router run), their
  Redis connection through a :class:`~tests.lossy_proxy.LossyProxy` losing ``loss`` of
  the script replies;
* ``Mode.INLINE``: routing in the workers (``Completion(rules=...)``, whose client goes
  through the lossy proxy), one worker process SIGKILLed every ``kill_every_s`` and
  restarted, ``Redelivery`` bringing its messages back within seconds.

The producer streams its messages over ``produce_s``; then a bounded wait for
quiescence (the soak's ``finished`` and nothing in flight), the processes are stopped,
and the soak's ``check`` runs. Every wait is bounded.

Over ~250 lines on purpose: one run's fleet, faults and waits are one piece.
"""

from __future__ import annotations

import enum
import json
import os
import random
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from tests.chaos import taken_lists
from tests.helpers import wait_for
from tests.lossy_proxy import LossyProxy
from tests.procs import LoggedProcess, RouterProcess, own_redis, routers, url_of

INPUT = "global/done"


class Mode(enum.Enum):
    ROUTERS = "routers"  # router processes killed, their replies lost
    INLINE = "inline"  # routing in the workers, workers killed


@dataclass(frozen=True)
class SoakPlan:
    """The faults and the fleet of one soak (its subclass adds the pipeline's size)."""

    mode: Mode
    copies: tuple[int, int] = (1, 3)  # deliveries of each first-stage message
    produce_s: float = 6.0
    routers: int = 3
    workers: int = 2
    threads: int = 8
    kill_every_s: tuple[float, float] = (1.0, 2.0)
    loss: float = 0.10  # of the script replies through the proxy
    quiesce_timeout_s: float = 60.0
    seed: int = 1


@dataclass
class SoakFigures:
    """What any soak did (its subclass adds the pipeline's own figures)."""

    sends: int = 0
    kills: int = 0
    deaths: int = 0  # worker processes that killed themselves, restarted
    replies_lost: int = 0
    duration_s: float = 0.0


class PipelineSoak:
    """One run of a soak in ``workdir``; see the module's docstring for the hooks."""

    #: The Dramatiq queues the pipeline's messages go through (empty when settled).
    queues: tuple[str, ...] = ()
    #: The module whose ``worker`` command (``python -m <module> worker ...``) runs a worker.
    worker_module = ""

    def __init__(self, *, plan: SoakPlan, workdir: Path, figures: SoakFigures) -> None:
        self.plan = plan
        self.workdir = workdir
        self.rng = random.Random(plan.seed)
        self.figures = figures
        self.produced = threading.Event()
        self.calm = threading.Event()  # set: the chaos stops
        self.failure: BaseException | None = None

    # what a soak says

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def messages(self) -> list[Message[Any]]:
        """What the producer sends, in this order (a message twice: delivered twice)."""
        raise NotImplementedError

    def worker_args(self) -> list[str]:
        """The worker command's arguments after ``URL LOSSY_URL RULES THREADS``."""
        return []

    def finished(self, r: redis.Redis) -> bool:
        """True when the pipeline's last stage has run for everything produced."""
        raise NotImplementedError

    def progress(self, r: redis.Redis) -> str:
        """Where the pipeline stands, for the message of a quiescence timeout."""
        queues = {q: r.llen(f"dramatiq:{q}") for q in self.queues}
        dead = r.llen(f"{INPUT}/dead")
        return f"input {r.llen(INPUT)}, dead {dead}, taken {taken_lists(r)}, queues {queues}"

    def check(self, r: redis.Redis) -> None:
        raise NotImplementedError

    # the run

    def run(self) -> SoakFigures:
        config = self.workdir / "pipeline.json"
        config.write_text(json.dumps(self.config()))
        started = time.monotonic()
        with ExitStack() as stack:
            server = stack.enter_context(own_redis())
            url = url_of(server)
            r = redis.Redis.from_url(url)
            stack.callback(r.close)
            proxy = stack.enter_context(
                LossyProxy(
                    upstream=(server.host, server.port),
                    drop={"EVALSHA", "EVAL"},
                    probability=self.plan.loss,
                    seed=self.plan.seed,
                )
            )
            inline = self.plan.mode is Mode.INLINE
            rules = config if inline else None
            workers = [
                self.worker(stack, url, proxy.url, rules, i) for i in range(self.plan.workers)
            ]
            fleet: list[RouterProcess] = []
            start = None
            if not inline:
                start = stack.enter_context(
                    routers(config=config, redis_url=proxy.url, heartbeat_ttl_s=2, batch=50)
                )
                fleet = [
                    start(instance=f"r{i}", log=self.workdir / f"r{i}.log")
                    for i in range(self.plan.routers)
                ]
            broker = RedisBroker(url=url)
            stack.callback(broker.close)
            producer = threading.Thread(target=self.produce, args=(broker,), daemon=True)
            producer.start()
            chaos = threading.Thread(
                target=self.chaos, args=(stack, url, proxy.url, rules, workers, fleet, start)
            )
            chaos.start()
            try:
                producer.join(timeout=self.plan.produce_s + 60)
                if self.failure is not None:
                    raise self.failure
                self.quiesce(r)
            finally:
                self.calm.set()
                chaos.join(timeout=30)
            for process in [*workers, *fleet]:  # before the last look: nothing runs on
                process.stop()
            self.figures.duration_s = time.monotonic() - started
            self.figures.replies_lost = proxy.dropped.total()
            self.check(r)
        return self.figures

    def worker(
        self, stack: ExitStack, url: str, lossy_url: str, rules: Path | None, index: int
    ) -> SoakWorker:
        args = [sys.executable, "-m", self.worker_module, "worker", url, lossy_url]
        args += [str(rules or ""), str(self.plan.threads), *self.worker_args()]
        process = SoakWorker(args, log=self.workdir / f"w{index}.log")
        stack.callback(process.stop)
        return process

    def produce(self, broker: RedisBroker) -> None:
        """Send ``messages()`` as a stream over ``produce_s``, not one burst."""
        try:
            sends = self.messages()
            chunks = max(1, int(self.plan.produce_s / 0.1))
            size = -(-len(sends) // chunks)
            begin = time.monotonic()
            for k, first in enumerate(range(0, len(sends), size)):
                for message in sends[first : first + size]:
                    broker.enqueue(message)
                pause = begin + (k + 1) * self.plan.produce_s / chunks - time.monotonic()
                time.sleep(max(0.0, pause))  # a stream, not one burst
            self.figures.sends = len(sends)
        except BaseException as error:
            self.failure = error
        finally:
            self.produced.set()

    def chaos(
        self,
        stack: ExitStack,
        url: str,
        lossy_url: str,
        rules: Path | None,
        workers: list[SoakWorker],
        fleet: list[RouterProcess],
        start: Any,
    ) -> None:
        """SIGKILL a router (ROUTERS) or a worker (INLINE) now and then, restart it at
        once; restart a worker that killed itself (a soak's own fault); until told to
        calm down."""
        generation = 0
        while not self.calm.wait(self.rng.uniform(*self.plan.kill_every_s)):
            generation += 1
            for i, process in enumerate(workers):  # a worker that killed itself
                if process.proc.poll() is not None:
                    workers[i] = self.worker(
                        stack, url, lossy_url, rules, 1000 + 10 * generation + i
                    )
                    self.figures.deaths += 1
            if self.plan.mode is Mode.ROUTERS:
                victim = self.rng.randrange(len(fleet))
                fleet[victim].kill()
                name = f"r{victim}" if generation % 2 else f"r{victim}-{generation}"
                fleet[victim] = start(instance=name, log=self.workdir / f"r{victim}.log")
            else:
                victim = self.rng.randrange(len(workers))
                workers[victim].kill()
                index = len(workers) + generation
                workers[victim] = self.worker(stack, url, lossy_url, rules, index)
            self.figures.kills += 1

    def quiesce(self, r: redis.Redis) -> None:
        """Wait (bounded) until :meth:`quiet`; a timeout says where things stand then."""
        try:
            wait_for(lambda: self.quiet(r), timeout_s=self.plan.quiesce_timeout_s, poll_s=0.2)
        except AssertionError as e:
            raise AssertionError(f"no quiescence: {e} ({self.progress(r)})") from None

    def quiet(self, r: redis.Redis) -> bool:
        """Everything produced went through, nothing is in flight."""
        if not self.produced.is_set() or not self.finished(r):
            return False
        if r.llen(INPUT) or taken_lists(r):
            return False
        if any(r.llen(f"dramatiq:{q}") for q in self.queues):
            return False
        return not any(r.scard(k) for k in r.scan_iter("dramatiq:__acks__.*"))


class SoakWorker(LoggedProcess):
    """A soak's Dramatiq worker process (``python -m <module> worker ...``)."""

    stop_timeout_s = 15.0

    def __init__(self, args: list[str], *, log: Path) -> None:
        root = Path(__file__).parent.parent
        env = {**os.environ, "PYTHONPATH": str(root)}
        super().__init__(args, log=log, cwd=root, env=env)


def worker_broker(url: str, lossy_url: str, rules: str, *, lossy: bool = False) -> RedisBroker:
    """A worker process's broker: ``Completion`` (routing inline with ``rules``, a
    config file, if given; its client through ``lossy_url`` then, or when ``lossy``),
    ``Redelivery`` bringing a killed worker's messages back within ~3 s,
    ``CurrentMessage``."""
    from dramatiq.middleware import CurrentMessage, Retries

    from resc_dramatiq.worker.completion import Completion
    from resc_dramatiq.worker.redelivery import Redelivery

    broker = RedisBroker(url=url)
    client = redis.Redis.from_url(lossy_url) if rules or lossy else None
    completion = Completion(done_queue=INPUT, rules=rules or None, client=client, attempts=12)
    broker.add_middleware(completion, before=Retries)
    broker.add_middleware(Redelivery(heartbeat_timeout_ms=3_000, interval_ms=500))
    broker.add_middleware(CurrentMessage())
    return broker

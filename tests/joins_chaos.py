"""The join soak: a Dramatiq fan-out/fan-in pipeline under kill -9 and lost replies.

The pipeline (``join_config``), on a Redis of its own, with real ``dramatiq.Worker``
processes on ``RedisBroker`` (``python -m tests.joins_chaos worker ...``):

* the producer sends the actor ``split(g)`` 1 to 3 times per group, the groups in a
  random order; its done event ``batch/<g>`` fans out: the rule ``split`` makes 50 (or
  ``members``) messages ``member(g, i)``, task ``m/<g>/<i>``, recorded as the group
  ``g/<g>`` (``group:``); so every member runs, and sends its done event, once per copy;
* the member's body records its first run (``HSETNX jc/done/<g> <i> <ms>``) before
  ``Completion`` writes its done event, and in the same script looks at its group: a
  group closed (its join fired) before one of its members first ran was closed without
  that member's done event, so early (noted in ``jc/early/<g>``). The join message's
  timestamp would not do: it is set when the commit is planned, and a commit planned
  before another member's commit may run after it. Member 0 of every ``incomplete_every``-th group
  fails for good (no retries): its failure event goes to ``global/done/failed``, which
  nobody watches, and its group misses a member for ever;
* the join rule ``gather`` (``expect: "fan-out"``) makes ``joined(g)``, whose body
  records its Dramatiq message id and how many members had run by then.

Routing is done by router processes (``Mode.ROUTERS``: three of them, one SIGKILLed
every 1-2 s and restarted, talking to Redis through a proxy that loses 10 % of the
script replies) or inside the workers (``Mode.INLINE``: ``Completion(rules=...)``, one
worker SIGKILLed every 1-2 s and restarted, ``Redelivery`` bringing its messages back
in seconds; Completion's own client goes through the lossy proxy).

Then the checks (:meth:`JoinSoak.check`): every complete group has exactly one join
message (one Dramatiq message id, however often it ran), closed after every one of its
members had first run; no incomplete group has any; the counters agree. Every wait is bounded.
"""

from __future__ import annotations

import enum
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq.store.joins import JoinKeys
from tests.chaos import taken_lists
from tests.helpers import wait_for
from tests.lossy_proxy import LossyProxy
from tests.procs import LoggedProcess, RouterProcess, own_redis, routers, url_of, work_until_sigterm

INPUT = "global/done"
FAILED = "global/done/failed"
DONE_AT = "jc/done/"  # + group: hash member -> ms of its first run
JOINED = "jc/joined/"  # + group: hash join message id -> members run when it ran
EARLY = "jc/early/"  # + group: hash member -> its group's state when it first ran
QUEUES = ("split", "members", "joined")


def join_config(members: int) -> dict[str, Any]:
    """The fan-out of ``members`` messages per group and the join that gathers them."""
    split = {
        "name": "split",
        "on": r"^batch/(?P<g>\d+)$",
        "make": [
            {
                "actor": "member",
                "queue": "members",
                "task": f"m/${{g}}/{i}",
                "kwargs": {"g": "${g}", "i": str(i)},
                "group": "g/${g}",
            }
            for i in range(members)
        ],
    }
    gather = {
        "name": "gather",
        "on": r"^m/(?P<g>\d+)/\d+$",
        "join": {"group": "g/${g}", "expect": "fan-out"},
        "make": {"actor": "joined", "queue": "joined", "task": "j/${g}", "kwargs": {"g": "${g}"}},
    }
    return {"watchers": [{"input_queue": INPUT, "rules": [split, gather]}]}


class Mode(enum.Enum):
    ROUTERS = "routers"  # router processes killed, their replies lost
    INLINE = "inline"  # routing in the workers, workers killed


@dataclass(frozen=True)
class JoinPlan:
    """The size and the faults of one join soak."""

    mode: Mode
    groups: int = 30
    members: int = 50
    incomplete_every: int = 10  # group numbers ending so: member 0 fails, never complete
    copies: tuple[int, int] = (1, 3)  # sends of split(g): members delivered this often
    produce_s: float = 6.0
    routers: int = 3
    workers: int = 2
    threads: int = 8
    kill_every_s: tuple[float, float] = (1.0, 2.0)
    loss: float = 0.10  # of the script replies through the proxy
    quiesce_timeout_s: float = 60.0
    seed: int = 1

    def incomplete(self, g: int) -> bool:
        return g % self.incomplete_every == self.incomplete_every - 1


@dataclass
class JoinFigures:
    """What a join soak did."""

    sends: int = 0
    member_runs: int = 0
    joins: int = 0
    kills: int = 0
    replies_lost: int = 0
    late: int = 0
    duration_s: float = 0.0
    kill_log: list[str] = field(default_factory=list)

    def report(self) -> str:
        return (
            f"split sends {self.sends}, member done events {self.member_runs}, "
            f"joins {self.joins}, late members {self.late}, kills {self.kills}, "
            f"replies lost {self.replies_lost}, {self.duration_s:.1f} s"
        )


class JoinSoak:
    """One run of a ``JoinPlan`` in ``workdir``."""

    def __init__(self, *, plan: JoinPlan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.rng = random.Random(plan.seed)
        self.figures = JoinFigures()
        self.produced = threading.Event()
        self.calm = threading.Event()  # set: the chaos stops
        self.failure: BaseException | None = None

    def run(self) -> JoinFigures:
        config = self.workdir / "joins.json"
        config.write_text(json.dumps(join_config(self.plan.members)))
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
            workers = [
                self.worker(stack, url, proxy.url, config if inline else None, i)
                for i in range(self.plan.workers)
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
                target=self.chaos, args=(stack, url, proxy.url, config, workers, fleet, start)
            )
            chaos.start()
            try:
                producer.join(timeout=self.plan.produce_s + 60)
                if self.failure is not None:
                    raise self.failure
                wait_for(
                    lambda: self.quiet(r),
                    timeout_s=self.plan.quiesce_timeout_s,
                    poll_s=0.2,
                    what=f"quiescence ({self.progress(r)})",
                )
            finally:
                self.calm.set()
                chaos.join(timeout=30)
            for process in [*workers, *fleet]:  # before the last look: nothing runs on
                process.stop()
            self.figures.duration_s = time.monotonic() - started
            self.figures.replies_lost = proxy.dropped.total()
            self.check(r)
        return self.figures

    # the processes

    def worker(
        self, stack: ExitStack, url: str, lossy_url: str, rules: Path | None, index: int
    ) -> JoinWorker:
        log = self.workdir / f"w{index}.log"
        process = JoinWorker(url=url, lossy_url=lossy_url, rules=rules, log=log, plan=self.plan)
        stack.callback(process.stop)
        return process

    def produce(self, broker: RedisBroker) -> None:
        """Send ``split(g)`` 1-3 times per group, in a random order, over ``produce_s``."""
        try:
            sends = [
                g
                for g in range(self.plan.groups)
                for _ in range(self.rng.randint(*self.plan.copies))
            ]
            self.rng.shuffle(sends)
            chunks = max(1, int(self.plan.produce_s / 0.1))
            size = -(-len(sends) // chunks)
            begin = time.monotonic()
            for k, first in enumerate(range(0, len(sends), size)):
                for g in sends[first : first + size]:
                    broker.enqueue(Message("split", "split", (), {"g": str(g)}, {}))
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
        config: Path,
        workers: list[JoinWorker],
        fleet: list[RouterProcess],
        start: Any,
    ) -> None:
        """SIGKILL a router (ROUTERS) or a worker (INLINE) now and then, restart it at
        once; until told to calm down."""
        generation = 0
        while not self.calm.wait(self.rng.uniform(*self.plan.kill_every_s)):
            generation += 1
            if self.plan.mode is Mode.ROUTERS:
                victim = self.rng.randrange(len(fleet))
                fleet[victim].kill()
                # every other restart under a new name: both the own-list recovery at
                # start and the heartbeat reclaim by another router run
                name = f"r{victim}" if generation % 2 else f"r{victim}-{generation}"
                fleet[victim] = start(instance=name, log=self.workdir / f"r{victim}.log")
            else:
                victim = self.rng.randrange(len(workers))
                workers[victim].kill()
                index = len(workers) + generation
                workers[victim] = self.worker(stack, url, lossy_url, config, index)
            self.figures.kills += 1

    # the checks

    def complete_groups(self) -> list[int]:
        return [g for g in range(self.plan.groups) if not self.plan.incomplete(g)]

    def quiet(self, r: redis.Redis) -> bool:
        """Every member ran, every complete group ran its join, nothing in flight."""
        if not self.produced.is_set():
            return False
        pipe = r.pipeline(transaction=False)
        for g in range(self.plan.groups):
            pipe.hlen(f"{DONE_AT}{g}")
            pipe.hlen(f"{JOINED}{g}")
        replies = pipe.execute()
        for g in range(self.plan.groups):
            ran, joined = replies[2 * g], replies[2 * g + 1]
            wanted = self.plan.members - 1 if self.plan.incomplete(g) else self.plan.members
            if ran < wanted or (joined == 0 and not self.plan.incomplete(g)):
                return False
        if r.llen(INPUT) or taken_lists(r):
            return False
        if any(r.llen(f"dramatiq:{q}") for q in QUEUES):
            return False
        return not any(r.scard(k) for k in r.scan_iter("dramatiq:__acks__.*"))

    def progress(self, r: redis.Redis) -> str:
        joined = sum(bool(r.hlen(f"{JOINED}{g}")) for g in range(self.plan.groups))
        queues = {q: r.llen(f"dramatiq:{q}") for q in QUEUES}
        return (
            f"groups joined {joined}/{len(self.complete_groups())}, input {r.llen(INPUT)}, "
            f"taken {taken_lists(r)}, queues {queues}"
        )

    def check(self, r: redis.Redis) -> None:
        """Each complete group joined once, after all of its members; no other did."""
        problems: list[str] = []
        for g in range(self.plan.groups):
            runs = {k.decode(): int(v) for k, v in r.hgetall(f"{JOINED}{g}").items()}
            early = {k.decode(): v.decode() for k, v in r.hgetall(f"{EARLY}{g}").items()}
            if early:
                problems.append(f"group {g} was closed before these members first ran: {early}")
            if self.plan.incomplete(g):
                if runs:
                    problems.append(f"group {g} lacks member 0 and joined: {runs}")
                continue
            if len(runs) != 1:
                problems.append(f"group {g} joined {len(runs)} times (message ids {list(runs)})")
            for message_id, ran in runs.items():
                if ran != self.plan.members:
                    problems.append(f"group {g}: its join {message_id} ran when {ran} had run")
        assert not problems, "\n".join(problems[:20])
        stats = {k.decode(): int(v) for k, v in r.hgetall(f"{INPUT}/stats").items()}
        assert stats.get("gather|completed") == len(self.complete_groups()), stats
        assert stats.get("gather|failed", 0) == 0 and r.llen(f"{INPUT}/dead") == 0
        failures = Counter(e.decode() for e in r.lrange(FAILED, 0, -1))
        incomplete = [g for g in range(self.plan.groups) if self.plan.incomplete(g)]
        assert set(failures) == {f"m/{g}/0" for g in incomplete}, failures
        assert r.llen("dramatiq:joined") == 0
        self.figures.joins = sum(r.hlen(f"{JOINED}{g}") for g in range(self.plan.groups))
        self.figures.member_runs = stats.get("gather|matched", 0)
        self.figures.late = stats.get("gather|late", 0)


class JoinWorker(LoggedProcess):
    """``python -m tests.joins_chaos worker URL ...``: a Dramatiq worker process."""

    stop_timeout_s = 15.0

    def __init__(
        self, *, url: str, lossy_url: str, rules: Path | None, log: Path, plan: JoinPlan
    ) -> None:
        args = [sys.executable, "-m", "tests.joins_chaos", "worker", url, lossy_url]
        args += [str(plan.threads), str(plan.incomplete_every), str(rules or "")]
        root = Path(__file__).parent.parent
        env = {**os.environ, "PYTHONPATH": str(root)}
        super().__init__(args, log=log, cwd=root, env=env)


def worker_main(argv: list[str]) -> int:
    """``worker URL LOSSY_URL THREADS INCOMPLETE_EVERY RULES``: runs until SIGTERM.

    With ``RULES`` (a config file), done events are routed in the worker, and
    Completion's client goes through ``LOSSY_URL``. ``Redelivery`` brings a killed
    worker's messages back within ~3 s.
    """
    import dramatiq
    from dramatiq.middleware import CurrentMessage, Retries

    from resc_dramatiq.worker.completion import Completion
    from resc_dramatiq.worker.redelivery import Redelivery

    url, lossy_url, threads, every, rules = argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5]
    broker = RedisBroker(url=url)
    client = redis.Redis.from_url(lossy_url) if rules else None
    completion = Completion(done_queue=INPUT, rules=rules or None, client=client, attempts=12)
    broker.add_middleware(completion, before=Retries)
    broker.add_middleware(Redelivery(heartbeat_timeout_ms=3_000, interval_ms=500))
    broker.add_middleware(CurrentMessage())
    r: redis.Redis = broker.client

    @dramatiq.actor(broker=broker, queue_name="split", done_event="batch/${g}")
    def split(g: str) -> None:
        """Its done event fans the group out."""

    # A member's first run, and whether its group was closed by then: one atomic look.
    # Its done event comes after its first run, so a group closed before it is early.
    first_run = r.register_script(
        "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then "
        "local state = redis.call('HGET', KEYS[2], 'state') "
        "if state and state ~= 'open' and state ~= 'fanout' then "  # fanout: recorded, open
        "redis.call('HSET', KEYS[3], ARGV[1], state) end "
        "end return 0"
    )
    groups = JoinKeys.of(INPUT)

    @dramatiq.actor(broker=broker, queue_name="members", max_retries=0)
    def member(g: str, i: str) -> None:
        if i == "0" and int(g) % every == every - 1:
            raise RuntimeError(f"member 0 of group {g} fails for good")
        keys = [f"{DONE_AT}{g}", groups.group(f"g/{g}"), f"{EARLY}{g}"]
        first_run(keys=keys, args=[i, int(time.time() * 1000)])

    @dramatiq.actor(broker=broker, queue_name="joined", done_event=False)
    def joined(g: str) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None
        ran = r.hlen(f"{DONE_AT}{g}")
        r.hset(f"{JOINED}{g}", message.message_id, ran)

    del split, member, joined  # declared on the broker; the worker finds them there
    return work_until_sigterm(broker, threads=threads)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))

"""The cluster run: a rule chain over many hash slots, under kill -9, a failover and a
slot migration.

On a cluster of its own (three primaries, three replicas), three ``resc-dramatiq router``
processes (``redis+cluster://``, the wait option on) and two Dramatiq worker processes
(``RedisBroker(client=connect(url), namespace=NAMESPACE)`` with ``Completion`` and
``Redelivery``) run the chain:

* ``acq/<n>`` (``b``: the last two digits of ``n``): raw ``trt/<n>`` onto ``{trt<b>}``
  (dedup set ``{trt<b>}/todo``), raw ``log/<n>`` onto ``log/<b>`` (no dedup set: a
  task made twice would show), and for every tenth ``n`` the actor ``check`` (dedup set
  in Dramatiq's slot); a worker counts its runs and ``Completion`` emits ``chk/<n>``;
* ``chk/<n>``: raw ``fin/<n>`` onto ``{fin<b>}`` (dedup set ``{fin<b>}/todo``);
* a join of the ``chk/<n>`` of each hundred (``tens``: group ``tens/<n // 100>``, its
  ten multiples of ten as members): raw ``tens/<n // 100>`` onto ``{w}/tens`` once, when
  all ten are in (its state in the watcher's slot, through the failover).

A producer pushes the events with ``WAIT 1`` in one transaction with a record of each
chunk, so a push whose answer a failover lost is found (or not) on the new primary and
never pushed twice. Meanwhile the chaos loop SIGKILLs a random router every 1-2 s and
starts it again; once, the primary of the watcher's slot is SIGKILLed (its replica takes
over; the old primary comes back as a replica), and one target slot is migrated to
another primary chunk by chunk. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from resc_dramatiq import connect
from resc_dramatiq.store.slots import key_slot
from tests.cluster import LocalCluster, redis_cluster
from tests.helpers import wait_for
from tests.procs import LoggedProcess, routers, work_until_sigterm

INPUT = "{w}/done"
PRODUCED = "{w}/produced"  # the chunks pushed (in the input's slot: one transaction)
RUNS = "{w}/runs"
NAMESPACE = "{dramatiq}"
MIGRATED = "{trt07}"  # a target list whose slot moves mid-stream
TENS = "{w}/tens"  # the join's target: in the watcher's slot


def chain_config() -> dict[str, Any]:
    """The two-stage chain (see the module docstring)."""
    check = {"actor": "check", "queue": "check", "task": "chk/${n}", "args": ["${n}"]}
    check["set"] = f"{NAMESPACE}/chk/todo"
    return {
        "namespace": NAMESPACE,
        "watchers": [
            {
                "input_queue": INPUT,
                "rules": [
                    {
                        "name": "acq",
                        "on": r"^acq/(?P<n>\d*(?P<b>\d\d))$",
                        "make": [
                            {"task": "trt/${n}", "queue": "{trt${b}}", "set": "{trt${b}}/todo"},
                            {"task": "log/${n}", "queue": "log/${b}"},
                        ],
                    },
                    {"name": "check", "on": r"^acq/(?P<n>\d*0)$", "make": check},
                    {
                        "name": "fin",
                        "on": r"^chk/(?P<n>\d*(?P<b>\d\d))$",
                        "make": {"task": "fin/${n}", "queue": "{fin${b}}", "set": "{fin${b}}/todo"},
                    },
                    {
                        "name": "tens",
                        "on": r"^chk/(?P<h>\d*)(?P<d>\d)0$",
                        "join": {"group": "tens/${h}", "member": "${d}", "expect": 10},
                        "make": {"task": "tens/${h}", "queue": TENS},
                    },
                ],
            }
        ],
    }


@dataclass
class Figures:
    """What one run saw."""

    events: int
    router_kills: int = 0
    promoted_s: float | None = None
    migrated_keys: int = 0
    restarts: int = 0
    tasks: dict[str, Counter[str]] = field(default_factory=dict)
    runs: Counter[str] = field(default_factory=Counter)
    taken: dict[str, int] = field(default_factory=dict)
    outbox: int = -1
    dead: int = -1

    def expected(self) -> dict[str, set[str]]:
        """Every task the chain must make, once each, by kind."""
        numbers = range(self.events)
        return {
            "trt": {f"trt/{n:02d}" for n in numbers},
            "log": {f"log/{n:02d}" for n in numbers},
            "fin": {f"fin/{n:02d}" for n in numbers if n % 10 == 0},
            "tens": {f"tens/{h or ''}" for h in range(self.events // 100)},  # full hundreds
        }

    def problems(self) -> list[str]:
        """Every way the run missed exactly once (empty: none)."""
        found = []
        for kind, expected in self.expected().items():
            got = self.tasks.get(kind, Counter())
            twice = sorted(t for t, c in got.items() if c > 1)
            missing = sorted(expected - set(got))
            extra = sorted(set(got) - expected)
            for what, items in (("twice", twice), ("missing", missing), ("unexpected", extra)):
                if items:
                    found.append(f"{kind} {what}: {len(items)} e.g. {items[:5]}")
        unrun = [n for n in range(0, self.events, 10) if self.runs[f"{n:02d}"] < 1]
        if unrun:
            found.append(f"check never ran for {len(unrun)}: {unrun[:5]}")
        if any(self.taken.values()):
            found.append(f"taken lists not empty: {self.taken}")
        if self.outbox:
            found.append(f"outbox holds {self.outbox} entries")
        if self.dead:
            found.append(f"dead letters: {self.dead}")
        return found


class Producer(threading.Thread):
    """Pushes ``acq/<n>`` in chunks, each confirmed by a replica (see the docstring)."""

    def __init__(self, cluster: LocalCluster, events: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.events = cluster, events
        self.pushed = 0
        self.failure: BaseException | None = None
        #: set when the chaos begins: the stream waits for it after its first chunk, so
        #: that slow router starts (a loaded machine) never let it finish before the chaos
        self.go = threading.Event()

    def run(self) -> None:
        try:
            client = self.cluster.client()
            for first in range(0, self.events, 20):
                chunk = [f"acq/{n:02d}" for n in range(first, min(first + 20, self.events))]
                wait_for(lambda c=chunk: self.push(client, c), timeout_s=60, what="a push")
                self.pushed += len(chunk)
                if not self.go.wait(timeout=120):
                    raise AssertionError("the chaos never began")
                time.sleep(0.1)  # a steady stream, for the chaos to cut into
            client.close()
        except BaseException as e:
            self.failure = e

    def push(self, cluster: RedisCluster, chunk: list[str]) -> bool:
        """One chunk with its record, then ``WAIT 1``; a chunk already recorded (on the
        primary now serving the slot) is not pushed again."""
        try:
            node = cluster.get_redis_connection(cluster.get_node_from_key(INPUT))
            if node.sismember(PRODUCED, chunk[0]):
                return True
            with node.pipeline(transaction=True) as pipe:
                pipe.lpush(INPUT, *chunk)
                pipe.sadd(PRODUCED, chunk[0])
                pipe.execute()
            return int(node.execute_command("WAIT", 1, 2000)) >= 1
        except (redis.RedisError, OSError):
            cluster.nodes_manager.initialize()
            return False


class WorkerProcess(LoggedProcess):
    """``python -m tests.cluster_chaos worker URL``: a Dramatiq worker on the cluster."""

    stop_timeout_s = 20.0

    def __init__(self, *, url: str, log: Path) -> None:
        root = Path(__file__).parent.parent
        args = [sys.executable, "-m", "tests.cluster_chaos", "worker", url]
        super().__init__(args, log=log, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})


def worker_main(argv: list[str]) -> int:
    """``worker URL``: the actor ``check`` counts its runs; Completion emits ``chk/<n>``
    onto the watcher's input (each acknowledged by a replica); Redelivery."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import Retries

    from resc_dramatiq import Completion, Redelivery

    client = connect(argv[1])
    broker = RedisBroker(client=client, namespace=NAMESPACE)
    broker.add_middleware(Completion(done_queue=INPUT, wait_replicas=1), before=Retries)
    broker.add_middleware(Redelivery(heartbeat_timeout_ms=3_000, interval_ms=500))

    @dramatiq.actor(broker=broker, queue_name="check", min_backoff=100, max_backoff=1000)
    def check(n: str) -> None:
        client.hincrby(RUNS, n, 1)

    del check  # declared on the broker; the worker finds it there
    return work_until_sigterm(broker, threads=4)


def run_chaos(workdir: Path, *, events: int = 2000) -> Figures:
    """One whole run (see the module docstring); returns its figures."""
    figures = Figures(events=events)
    config = workdir / "chain.json"
    config.write_text(json.dumps(chain_config()))
    with ExitStack() as stack:
        cluster = stack.enter_context(redis_cluster())
        client = cluster.client()
        stack.callback(client.close)
        extra = ("--wait-replicas", "1", "--wait-timeout-ms", "2000")
        start = stack.enter_context(
            routers(config=config, redis_url=cluster.url, heartbeat_ttl_s=3, batch=20, extra=extra)
        )
        fleet = [start(instance=f"r{i}", log=workdir / f"r{i}.log") for i in range(3)]
        for i in range(2):
            worker = WorkerProcess(url=cluster.url, log=workdir / f"w{i}.log")
            stack.callback(worker.stop)
        producer = Producer(cluster, events)
        producer.start()
        wait_for(lambda: _routed(client) > 0, timeout_s=60, what="the first commit")
        producer.go.set()
        chaos(cluster, fleet, start, workdir, producer, figures)
        producer.join(timeout=120)
        assert producer.failure is None, producer.failure
        with suppress(AssertionError):  # if it does not settle, the figures say why
            wait_for(lambda: settled(client, figures), timeout_s=60, poll_s=1.0, what="settled")
        read_outcome(client, figures)
    return figures


def chaos(
    cluster: LocalCluster,
    fleet: list[Any],
    start: Any,
    workdir: Path,
    producer: Producer,
    figures: Figures,
) -> None:
    """Kill routers until the producer is done; on the way, fail over the watcher's
    shard and migrate a target slot."""
    rng = random.Random(7)
    failed_over = migrated = False
    deadline = time.monotonic() + 120
    while producer.is_alive() and time.monotonic() < deadline:
        time.sleep(rng.uniform(1.0, 2.0))
        i = rng.randrange(len(fleet))
        fleet[i].kill()
        figures.router_kills += 1
        name = f"r{i}" if figures.router_kills % 2 else f"r{i}-{figures.router_kills}"
        fleet[i] = start(instance=name, log=workdir / f"{name}.log")
        if not failed_over and producer.pushed >= figures.events // 3:
            victim = cluster.kill_primary_of(INPUT)
            figures.promoted_s = cluster.wait_promoted(victim)
            cluster.restart(victim)
            failed_over = True
        if not migrated and producer.pushed >= figures.events // 2:
            slot = key_slot(MIGRATED)
            target = next(n for n in cluster.primaries() if n is not cluster.owner_of_slot(slot))
            figures.migrated_keys = cluster.migrate_slot(
                slot, target, between_chunks=lambda: time.sleep(0.5)
            ).moved
            migrated = True


def _routed(client: RedisCluster) -> int:
    return int(client.hget(f"{INPUT}/stats", "events") or 0)


def settled(client: RedisCluster, figures: Figures) -> bool:
    """Every task made, every check run, nothing in flight."""
    read_outcome(client, figures)
    return not figures.problems()


def read_outcome(client: RedisCluster, figures: Figures) -> None:
    """The tasks in every target list, the runs, what is left in flight."""
    tasks: dict[str, Counter[str]] = {"trt": Counter(), "log": Counter(), "fin": Counter()}
    tasks["tens"] = Counter(t.decode() for t in client.lrange(TENS, 0, -1))
    for b in range(100):
        keys = {"trt": f"{{trt{b:02d}}}", "log": f"log/{b:02d}", "fin": f"{{fin{b:02d}}}"}
        for kind, key in keys.items():
            tasks[kind].update(t.decode() for t in client.lrange(key, 0, -1))
    figures.tasks = tasks
    figures.runs = Counter({k.decode(): int(v) for k, v in client.hgetall(RUNS).items()})
    taken = [k.decode() for k in client.scan_iter(match=f"{INPUT}/taken*", _type="list")]
    figures.taken = {name: int(client.llen(name)) for name in taken}
    figures.outbox = int(client.hlen(f"{INPUT}/outbox"))
    figures.dead = int(client.llen(f"{INPUT}/dead"))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    sys.exit(worker_main(sys.argv[1:]))

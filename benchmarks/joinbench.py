"""Joins: the router on a join rule against a plain rule, a fan-in on one Dramatiq worker
against Dramatiq's own group callbacks, and the memory an open group takes.

``python benchmarks/joinbench.py [--events N] [--groups G] [--members M]`` starts the
embedded server and measures, in one run:

* **router rows**: the same ``N`` events ``m/<group>/<member>`` (members of a group
  interleaved with the other groups', so a group completes over many batches) routed by a
  ``resc-dramatiq router`` process with a plain rule (a raw task per event) and with a
  join rule (groups of 10, a raw task per completed group); target: join >= 0.7x plain;
* **fan-in on one worker** (8 threads, no-op actors, ``G`` groups of ``M`` members):
  (a) Dramatiq's ``group(...).add_completion_callback`` with ``GroupCallbacks``; (b) the
  members' done events joined in the worker (``Completion(route_inline=True)``,
  ``@on_done(join=Join(...))``); members per second from the first member to the last
  callback. Then one member of a finished group is delivered again (the same message,
  as a redelivery after a worker died would) and the callbacks are counted: target: (b)
  at least as fast as (a), and once where (a) fires twice;
* **memory**: ``used_memory`` per open group, 100,000 groups with one member each.

Prints the rows and their ratios, and writes them as JSON with ``--json-out``;
``--skip-fanin`` and ``--skip-memory`` leave those rows out (the router rows alone).
``--repeat K`` runs the two router rows K times, back to back, their order turned each
round, and gives the median of the rounds' own ratios and of each row's CPU per event
(steadier on a shared machine than one run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import GroupCallbacks, Middleware, Retries
from dramatiq.rate_limits.backends import RedisBackend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import routerbench  # noqa: E402

from resc_dramatiq import Completion, Join, Registry  # noqa: E402
from resc_dramatiq.ops.embedded import EmbeddedRedis  # noqa: E402

INPUT = "bench/done"
PATTERN = r"^m/(?P<g>\d+)/(?P<i>\d+)$"
ROUTER_GROUP = 10
THREADS = 8
#: The registry of the fan-in's join (the worker finds it in this module).
REG = Registry()


def router_config(path: Path, *, join: bool) -> Path:
    """A plain rule (a task per event) or a join rule (a task per group of 10)."""
    rule: dict[str, Any] = {"name": "bench", "on": PATTERN}
    if join:
        rule["join"] = {"group": "g/${g}", "member": "${i}", "expect": ROUTER_GROUP}
        rule["make"] = {"task": "pack/${g}", "queue": "raw"}
    else:
        rule["make"] = {"task": "t/${g}/${i}", "queue": "raw"}
    path.write_text(json.dumps({"watchers": [{"input_queue": INPUT, "rules": [rule]}]}))
    return path


#: CPU µs per event of the router and the server processes, per router row and run
#: (steadier than events/s on a shared machine: the two pipeline, the slower one sets
#: the pace).
cpu_us: dict[str, dict[str, list[float]]] = {}


def router_row(client: redis.Redis, url: str, workdir: Path, *, join: bool, events: int) -> float:
    """Events per second of one router process on ``events`` interleaved members."""
    client.flushdb()
    groups = events // ROUTER_GROUP
    routerbench.prefill(client, "stage", events, event=lambda n: f"m/{n % groups}/{n // groups}")
    config = router_config(workdir / f"{'join' if join else 'plain'}.json", join=join)
    t = routerbench.route(client, url, config, stages={"stage": INPUT}, events=events, batch=500)
    made = client.llen("raw")
    if made != (groups if join else events):
        raise RuntimeError(f"{config.stem}: {made} tasks for {events} events")
    runs = cpu_us.setdefault(config.stem, {"router": [], "server": []})
    runs["router"].append(round(t.router_cpu * t.seconds / events * 1e6, 2))
    runs["server"].append(round(t.server_cpu * t.seconds / events * 1e6, 2))
    return t.events_per_s


def router_rows(
    client: redis.Redis, url: str, workdir: Path, *, events: int, repeat: int
) -> dict[str, Any]:
    """The plain and the join rows, ``repeat`` rounds back to back (their order turned
    each round): each round's events/s, the median of the rounds' own ratios, and the
    median CPU µs per event of each row's router and server."""
    rounds = []
    for n in range(repeat):
        order = (False, True) if n % 2 == 0 else (True, False)
        rates = {join: router_row(client, url, workdir, join=join, events=events) for join in order}
        rounds.append({"plain_events_per_s": rates[False], "join_events_per_s": rates[True]})
    ratios = sorted(r["join_events_per_s"] / r["plain_events_per_s"] for r in rounds)
    return {
        "rounds": rounds,
        "join / plain, median of rounds": ratios[len(ratios) // 2],
        "CPU µs per event, median of runs": {
            row: {side: statistics.median(values) for side, values in sides.items()}
            for row, sides in cpu_us.items()
        },
    }


class Counts:
    """Runs of the callback actors, per group, and when the last one ran."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Counter[str] = Counter()
        self.last = 0.0

    def ran(self, group: str) -> None:
        with self.lock:
            self.runs[group] += 1
            self.last = time.perf_counter()


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s} s")
        time.sleep(0.01)


def dramatiq_fan_in(url: str, groups: int, members: int) -> dict[str, Any]:
    """(a) Dramatiq's group callbacks: members/s, and callbacks after a redelivery."""
    broker = RedisBroker(url=url)
    broker.client.flushdb()
    broker.add_middleware(GroupCallbacks(RedisBackend(client=broker.client)))
    sent = SentMembers()
    broker.add_middleware(sent)
    counts = Counts()

    @dramatiq.actor(broker=broker, queue_name="fan", max_retries=0)
    def member(g: int, i: int) -> None:
        pass

    @dramatiq.actor(broker=broker, queue_name="fan", max_retries=0)
    def gathered(g: int) -> None:
        counts.ran(str(g))

    for g in range(groups):
        group = dramatiq.group([member.message(g, i) for i in range(members)], broker=broker)
        group.add_completion_callback(gathered.message(g))
        group.run()
    return _run_fan_in(
        broker, counts, groups, members, redeliver=lambda: broker.enqueue(sent.first)
    )


class SentMembers(Middleware):
    """Keeps the first group member enqueued (with its group's options), to send again."""

    def __init__(self) -> None:
        self.first: Any = None

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        if self.first is None and "group_completion_uuid" in message.options:
            self.first = message


def joined_fan_in(url: str, groups: int, members: int) -> dict[str, Any]:
    """(b) done events joined in the worker: members/s, and callbacks after a redelivery."""
    REG.clear()
    broker = RedisBroker(url=url)
    broker.client.flushdb()
    broker.add_middleware(Completion(route_inline=True, done_queue=INPUT), before=Retries)
    counts = Counts()

    @dramatiq.actor(broker=broker, queue_name="fan", max_retries=0, done_event="m/${g}/${i}")
    def member(g: int, i: int) -> None:
        pass

    @REG.on_done(PATTERN, watcher=INPUT, join=Join(group="g/${g}", member="${i}", expect=members))
    @dramatiq.actor(broker=broker, queue_name="fan", max_retries=0, done_event=False)
    def gathered(g: str) -> None:
        counts.ran(g)

    sent = [member.send(g, i) for g in range(groups) for i in range(members)]
    return _run_fan_in(broker, counts, groups, members, redeliver=lambda: broker.enqueue(sent[0]))


def _run_fan_in(
    broker: RedisBroker, counts: Counts, groups: int, members: int, *, redeliver: Any
) -> dict[str, Any]:
    worker = dramatiq.Worker(broker, worker_threads=THREADS, worker_timeout=50)
    started = time.perf_counter()
    worker.start()
    try:
        _wait(lambda: len(counts.runs) == groups, 300, "fan-in")
        seconds = counts.last - started
        broker.join("fan")
        redeliver()  # a finished group's first member, delivered again
        broker.join("fan")
        worker.join()
    finally:
        worker.stop()
        broker.close()
    return {
        "members_per_s": groups * members / seconds,
        "seconds": seconds,
        "callbacks": sum(counts.runs.values()),
        "groups": groups,
        "twice": sorted(g for g, n in counts.runs.items() if n > 1),
    }


def memory_per_group(client: redis.Redis, url: str, workdir: Path, groups: int) -> float:
    """Bytes of ``used_memory`` per open group (one member in, two missing)."""
    client.flushdb()
    config = workdir / "memory.json"
    rule = {
        "name": "bench",
        "on": PATTERN,
        "join": {"group": "g/${g}", "member": "${i}", "expect": 3},
        "make": {"task": "pack/${g}", "queue": "raw"},
    }
    config.write_text(json.dumps({"watchers": [{"input_queue": INPUT, "rules": [rule]}]}))
    routerbench.prefill(client, "stage", groups, event="m/{0}/0".format)
    before = client.info("memory")["used_memory"] - client.memory_usage("stage")  # type: ignore[operator]
    routerbench.route(client, url, config, stages={"stage": INPUT}, events=groups, batch=500)
    after = client.info("memory")["used_memory"]
    return float(after - before) / groups


def main() -> None:
    """Measure the rows, print them, write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--memory-groups", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the router rows")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--skip-fanin", action="store_true", help="skip the fan-in rows")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory row")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        workdir, url = Path(tmp), server.url
        client = redis.Redis.from_url(url)
        out["router"] = router_rows(client, url, workdir, events=args.events, repeat=args.repeat)
        if not args.skip_fanin:
            a = dramatiq_fan_in(url, args.groups, args.members)
            b = joined_fan_in(url, args.groups, args.members)
            out["fan_in"] = {"dramatiq_group_callbacks": a, "join_in_worker": b}
            out["fan_in"]["join / dramatiq"] = b["members_per_s"] / a["members_per_s"]
        if not args.skip_memory:
            out["memory_bytes_per_open_group"] = memory_per_group(
                client, url, workdir, args.memory_groups
            )
    print(json.dumps(out, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

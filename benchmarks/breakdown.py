"""Where one event's time goes in the router, step by step, in microseconds.

``python benchmarks/breakdown.py [--events N] [--batch B] [--redis-url URL]`` drives one
watcher's planner and store in this process (no threads, no overlap) and times each step
per event: take (client and server), planning and, within it, matching, making the tasks
and building the planned tasks (the Dramatiq messages), encoding the commit arguments,
and the commit call (client and server). Server time comes from ``INFO commandstats``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis
import routerbench
from rich.console import Console
from rich.table import Table

from resc_dramatiq.config.model import Config
from resc_dramatiq.ops.embedded import EmbeddedRedis
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.patterns import decode_event
from resc_dramatiq.rules.ruleset import RuleSet


def _server_us(client: redis.Redis) -> float:
    stats = client.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


def breakdown(
    client: redis.Redis, workdir: Path, *, target: str, events: int, batch: int
) -> dict[str, float]:
    """Microseconds per event of each step, for ``target`` (raw or actor)."""
    client.flushdb()
    config = routerbench.write_config(workdir / f"breakdown-{target}.json", target=target)
    router = Router(ruleset=RuleSet.compile(Config.load(config)), client=client, instance="bd")
    loop = router.loops[0]
    planner, store = loop.planner, loop.store
    routerbench.prefill(client, routerbench.INPUT, events)
    client.config_resetstat()
    started = time.perf_counter()
    taken = [store.take(batch) for _ in range(events // batch)]
    take_s = time.perf_counter() - started
    take_server = _server_us(client)
    client.config_resetstat()
    match_s = make_s = planned_s = plan_s = encode_s = commit_s = 0.0
    for evs in taken:
        # the steps of plan() one by one (their results thrown away), then plan() whole
        now_ms = int(time.time() * 1000)
        t0 = time.perf_counter()
        found = [planner.rules.matches(decode_event(e)) for e in evs]
        t1 = time.perf_counter()
        tasks = [(i, t) for i, ms in enumerate(found) for m in ms for t in planner.expand(m)]
        t2 = time.perf_counter()
        for i, t in tasks:
            planner.planned(t, i, now_ms)
        t3 = time.perf_counter()
        planned = planner.plan(evs)
        t4 = time.perf_counter()
        store.codec.encode(planned)
        t5 = time.perf_counter()
        store.commit(planned).result()
        t6 = time.perf_counter()
        match_s, make_s, planned_s = match_s + t1 - t0, make_s + t2 - t1, planned_s + t3 - t2
        plan_s, encode_s, commit_s = plan_s + t4 - t3, encode_s + t5 - t4, commit_s + t6 - t5
    commit_server = _server_us(client)
    n = (events // batch) * batch
    us = 1e6 / n
    return {
        "take (client + server)": take_s * us,
        "  take, server side": take_server / n,
        "plan (match, templates, messages)": plan_s * us,
        "  match (decode + regex)": match_s * us,
        "  make (templates)": make_s * us,
        "  planned tasks (Dramatiq messages)": planned_s * us,
        "encode (commit arguments), within the commit call": encode_s * us,
        "commit call (client + server)": commit_s * us,
        "  commit, server side": commit_server / n,
        "router CPU per event (take + plan + commit client side)": (
            take_s * us - take_server / n + plan_s * us + commit_s * us - commit_server / n
        ),
        "server per event (take + commit scripts)": (take_server + commit_server) / n,
    }


def main() -> None:
    """Print the breakdown for the raw and the Dramatiq target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--redis-url", help="use this server; its database is FLUSHED")
    args = parser.parse_args()
    console = Console()
    with ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis()).url
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="resc-bench-")))
        client = redis.Redis.from_url(url)
        results = {
            target: breakdown(client, workdir, target=target, events=args.events, batch=args.batch)
            for target in ("raw", "actor")
        }
    table = Table(title=f"µs per event ({args.events:,} events, batches of {args.batch})")
    table.add_column("step")
    table.add_column("raw", justify="right")
    table.add_column("actor", justify="right")
    for step in results["raw"]:
        table.add_row(step, f"{results['raw'][step]:.2f}", f"{results['actor'][step]:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()

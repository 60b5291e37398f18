"""Firing lag of an ``every_s: 1`` schedule, idle and while the router routes a full load.

Run from the repository root::

    .venv/bin/python benchmarks/schedule_lag.py [--seconds 30] [--target raw|actor]

One router subprocess watches the benchmark's input list (the rule of ``bench.py``) and
fires a schedule every second onto a list of its own. The lag of each tick (its
scheduled time to its push, on the Redis clock, as ``fire.lua`` records it) is sampled
from the schedule's state. Phase 1: no events. Phase 2: a feeder keeps the input list
between 100 k and 200 k events, so the router is never idle (events/s reported).
It starts its own server (the embedded one) unless ``--redis-url`` names one, whose
database is FLUSHED.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis
import routerbench
from bench import machine

from resc_dramatiq.ops.embedded import EmbeddedRedis
from resc_dramatiq.store.keys import schedule_state

SCHEDULE = "bench heartbeat"
TICKS = "bench/ticks"
LOW, HIGH = 100_000, 200_000  # the feeder keeps the input list between these


def write_config(path: Path, target: str) -> Path:
    """``bench.py``'s rule and target, plus the schedule."""
    routerbench.write_config(path, target=target)
    config = json.loads(path.read_text())
    config["schedules"] = [
        {"name": SCHEDULE, "every_s": 1, "event": "tick/${epoch}", "queue": TICKS}
    ]
    path.write_text(json.dumps(config, indent=2))
    return path


def sample_lags(client: redis.Redis, seconds: float) -> list[float]:
    """The lag (ms) of each tick fired during the next ``seconds``."""
    lags: dict[int, float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = client.hmget(schedule_state(SCHEDULE), "tick", "lag_ms")
        if state[0] is not None and state[1] is not None:
            lags.setdefault(int(state[0]), float(state[1]))
        time.sleep(0.1)
    return list(lags.values())[1:]  # the first one may predate the phase


def feed(client: redis.Redis, stop: threading.Event) -> None:
    """Keep the input list between LOW and HIGH events until ``stop``."""
    n = 0
    while not stop.is_set():
        if client.llen(routerbench.INPUT) > LOW:
            time.sleep(0.005)
            continue
        pipe = client.pipeline(transaction=False)
        for start in range(n, n + HIGH - LOW, 1000):
            pipe.lpush(routerbench.INPUT, *(f"acq/{i}/{i}" for i in range(start, start + 1000)))
        pipe.execute()
        n += HIGH - LOW


def quantiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` (ms)."""
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")

    return {"ticks": len(ordered), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)}


def events_done(client: redis.Redis) -> int:
    value = client.hget(routerbench.STATS, "events")
    return int(value) if value is not None else 0


def run(url: str, workdir: Path, seconds: float, target: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    config = write_config(workdir / "rules.json", target)
    router = routerbench.RouterProcess(config=config, url=url, batch=500)
    router.start(client)
    try:
        idle = quantiles(sample_lags(client, seconds))
        stop = threading.Event()
        feeder_client = redis.Redis.from_url(url)
        feeder = threading.Thread(target=feed, args=(feeder_client, stop), daemon=True)
        feeder.start()
        time.sleep(2)  # the router is busy
        before, started = events_done(client), time.monotonic()
        loaded = quantiles(sample_lags(client, seconds))
        loaded["events_per_s"] = (events_done(client) - before) / (time.monotonic() - started)
        stop.set()
        feeder.join(30)
    finally:
        router.stop()
    out = {"machine": machine(client), "target": target, "idle": idle, "under_load": loaded}
    return {**out, "ticks": check_ticks(client)}


def check_ticks(client: redis.Redis) -> dict[str, int]:
    """Every tick pushed: how many, how many twice, how many seconds missing in between."""
    ticks = sorted(int(v.split(b"/")[1]) for v in client.lrange(TICKS, 0, -1))
    span = ticks[-1] - ticks[0] + 1 if ticks else 0
    return {
        "pushed": len(ticks),
        "twice": len(ticks) - len(set(ticks)),
        "missed": span - len(set(ticks)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="use this server; its database is FLUSHED")
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase (default 30)")
    parser.add_argument("--target", choices=("raw", "actor"), default="raw")
    parser.add_argument("--json-out", type=Path, help="write the figures here")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis()).url
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="resc-lag-")))
        out = run(url, workdir, args.seconds, args.target)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text)


if __name__ == "__main__":
    main()

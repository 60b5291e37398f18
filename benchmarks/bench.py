"""Benchmark of the router against resc's algorithm, Redis's ceiling and Dramatiq chains.

Run from the repository root::

    .venv/bin/python benchmarks/bench.py [--quick] [--json-out results.json]

It starts its own server (the embedded one) unless ``--redis-url`` names one, whose
database is FLUSHED between phases. Phases: (1) resc's algorithm, one event at a time;
(2) the router subprocess on a prefilled list, raw and Dramatiq targets, peak RSS, and
event-to-commit latency at a paced offered load; (3) the server's own ceiling for the
same commands; (4) three-stage chains of no-op actors through real Dramatiq workers.
``--scaling`` adds the scaling section (``scaling.py``), ``--cluster`` the cluster rows
(``clusterbench.py``: a local Redis Cluster against a single primary of the same run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ceiling
import chainbench
import clusterbench
import psutil
import redis
import report
import routerbench
import scaling
import stacks
from rich.console import Console

from resc_dramatiq.ops.embedded import EmbeddedRedis


@dataclass(frozen=True)
class Sizes:
    """How much each phase does; ``--quick`` shrinks everything."""

    baseline_events: int
    raw_events: int
    actor_events: int
    rss_mark: int
    latency_s: float
    ceiling_requests: int
    chains: int
    latency_chains: int


FULL = Sizes(20_000, 1_000_000, 300_000, 100_000, 5.0, 1_000_000, 6_000, 100)
QUICK = Sizes(3_000, 100_000, 50_000, 20_000, 2.0, 200_000, 1_500, 40)
LATENCY_RATE = 10_000
CHAIN_LATENCY_RATE = 50.0


def machine(client: redis.Redis) -> dict[str, Any]:
    """What the figures were measured on."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = re.search(r"Model name:\s*(.+)", lscpu)
    server = client.info("server")
    name = "valkey" if "valkey_version" in server else "redis"
    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cores": psutil.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "server": f"{name} {server.get(f'{name}_version', server['redis_version'])}",
        "load_avg_at_start": os.getloadavg(),
    }


def run(args: argparse.Namespace, url: str, workdir: Path, console: Console) -> dict[str, Any]:
    """Every phase, in order; returns the JSON summary."""
    sizes = QUICK if args.quick else FULL
    client = redis.Redis.from_url(url)
    out: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(client)}
    if args.only_cluster:
        out["cluster"] = _cluster(args, workdir, console)
        out["machine"]["load_avg_at_end"] = os.getloadavg()
        return out
    if args.only_scaling:
        out["scaling"] = _scaling(args, client, url, workdir, console)
        out["machine"]["load_avg_at_end"] = os.getloadavg()
        out["targets"] = _scaling_targets(out["scaling"])
        return out

    console.log(f"baseline: resc's loop on {sizes.baseline_events:,} events")
    client.flushdb()
    out["baseline_events_per_s"] = routerbench.baseline_events_per_s(client, sizes.baseline_events)

    for target, events in (("raw", sizes.raw_events), ("actor", sizes.actor_events)):
        console.log(f"router, {target} target: {events:,} events, --batch {args.batch}")
        profile = args.profile / f"router-{target}.txt" if args.profile else None
        t = routerbench.throughput(
            client, url, workdir, target=target, events=events, batch=args.batch,
            marks=(sizes.rss_mark,), profile=profile,
        )  # fmt: skip
        if t.queued != events:
            raise RuntimeError(f"{target}: {t.queued} tasks queued for {events} events")
        out[f"router_{target}"] = {
            "events": events,
            "seconds": t.seconds,
            "events_per_s": t.events_per_s,
            "rss_start_mb": t.rss_start_mb,
            "rss_peak_mb": t.rss_peak_mb,
            "rss_marks_mb": t.rss_marks_mb,
            "router_cpu_cores": t.router_cpu,
            "server_cpu_cores": t.server_cpu,
            "profiled": profile is not None,
        }
        if profile is not None:
            out[f"router_{target}"]["profile"] = _profile_summary(profile)
            out[f"router_{target}"]["profile_watcher"] = _profile_summary(
                profile, within="WatcherLoop.run"
            )

    console.log(f"latency: {LATENCY_RATE:,} events/s offered for {sizes.latency_s} s")
    lat = routerbench.latency(
        client, url, workdir, rate=LATENCY_RATE, seconds=sizes.latency_s, batch=args.batch
    )
    out["latency"] = {
        "offered_per_s": lat.offered_per_s,
        "sent": lat.sent,
        "received": lat.received,
        "p50_ms": lat.percentile(0.5) * 1000,
        "p99_ms": lat.percentile(0.99) * 1000,
        "max_ms": lat.percentile(1.0) * 1000,
    }

    console.log("server ceiling for resc's commands")
    client.flushdb()
    ceil = ceiling.measure(url, requests=sizes.ceiling_requests)
    out["ceiling"] = {
        "tool": ceil.tool,
        "per_command_per_s": ceil.per_command,
        "events_per_s": ceil.events_per_s,
    }

    out["chains"] = {}
    for mode, title in chainbench.MODES.items():
        console.log(f"chain ({mode}) {title}: {sizes.chains:,} chains, {args.threads} threads")
        c = chainbench.run_chain(
            client, url, workdir, mode=mode, chains=sizes.chains, threads=args.threads,
            latency_chains=sizes.latency_chains, latency_rate=CHAIN_LATENCY_RATE,
            profile=args.profile / f"worker-{mode}.txt" if args.profile else None,
        )  # fmt: skip
        out["chains"][mode] = {
            "title": title,
            "chains_per_s": c.chains_per_s,
            "messages_per_s": c.messages_per_s,
            "hop_p50_ms": _quantile(c.hop_s, 0.5) * 1000,
            "hop_p99_ms": _quantile(c.hop_s, 0.99) * 1000,
            "enqueue_to_s1_p50_ms": _quantile(c.enqueue_to_s1_s, 0.5) * 1000,
            "worker_cpu_cores": c.worker_cpu,
        }
        if args.profile:
            out["chains"][mode]["profile"] = _profile_summary(args.profile / f"worker-{mode}.txt")
    if args.scaling:
        out["scaling"] = _scaling(args, client, url, workdir, console)
    if args.cluster:
        out["cluster"] = _cluster(args, workdir, console)
    out["machine"]["load_avg_at_end"] = os.getloadavg()
    out["ratios"] = _ratios(out)
    out["targets"] = _targets(out)
    if args.scaling:
        out["targets"] += _scaling_targets(out["scaling"])
    return out


def _scaling(
    args: argparse.Namespace, client: redis.Redis, url: str, workdir: Path, console: Console
) -> dict[str, Any]:
    return scaling.run(
        client, url, workdir, quick=args.quick, batch=args.batch, threads=args.threads,
        log=console.log,
    )  # fmt: skip


def _cluster(args: argparse.Namespace, workdir: Path, console: Console) -> list[dict[str, Any]]:
    events = 50_000 if args.quick else 200_000
    console.log(f"cluster rows: {events:,} events each, against a single primary")
    rows = clusterbench.run(events, workdir)
    base = rows[0].events_per_s
    return [
        dataclasses.asdict(r) | {"events_per_s": r.events_per_s, "ratio": r.events_per_s / base}
        for r in rows
    ]


def _scaling_targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"target": name, "value": value, "limit": limit,
         "pass": value >= limit if op == ">=" else value < limit}
        for name, value, limit, op in scaling.targets(section)
    ]  # fmt: skip


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _profile_summary(path: Path, *, within: str | None = None) -> dict[str, Any]:
    profile = stacks.load(path, within=within)
    return {
        "samples": profile.samples,
        "self": profile.top(inclusive=False, n=15),
        "inclusive": profile.top(inclusive=True, n=25),
    }


def _ratios(out: dict[str, Any]) -> dict[str, float]:
    raw, actor = out["router_raw"]["events_per_s"], out["router_actor"]["events_per_s"]
    chains = out["chains"]
    return {
        "router_raw / baseline": raw / out["baseline_events_per_s"],
        "router_actor / baseline": actor / out["baseline_events_per_s"],
        "router_raw / server ceiling": raw / out["ceiling"]["events_per_s"],
        "router_actor / server ceiling": actor / out["ceiling"]["events_per_s"],
        "chain b / a": chains["b"]["messages_per_s"] / chains["a"]["messages_per_s"],
        "chain c / a": chains["c"]["messages_per_s"] / chains["a"]["messages_per_s"],
    }


def _targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    raw, ratios = out["router_raw"], out["ratios"]
    marks = raw["rss_marks_mb"]
    growth = marks[max(marks)] - marks[min(marks)]
    peak = max(raw["rss_peak_mb"], out["router_actor"]["rss_peak_mb"])
    checks = [
        ("raw target with dedup >= 200,000 events/s", raw["events_per_s"], 200_000, ">="),
        ("raw target >= 80x resc baseline", ratios["router_raw / baseline"], 80, ">="),
        ("Dramatiq target >= 100,000 events/s", out["router_actor"]["events_per_s"], 100_000, ">="),
        ("p99 event-to-commit < 5 ms at 10,000/s", out["latency"]["p99_ms"], 5, "<"),
        ("router peak RSS < 150 MB", peak, 150, "<"),
        (f"RSS flat: growth {min(marks):,} -> {max(marks):,} events < 10 MB", growth, 10, "<"),
        ("chain (b) >= 0.9x chain (a)", ratios["chain b / a"], 0.9, ">="),
        ("chain (c) >= 0.8x chain (a)", ratios["chain c / a"], 0.8, ">="),
    ]  # fmt: skip
    return [
        {
            "target": name,
            "value": value,
            "limit": limit,
            "pass": value >= limit if op == ">=" else value < limit,
        }
        for name, value, limit, op in checks
    ]


def main() -> None:
    """Parse the options, start a server unless given one, run, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--redis-url", help="use this server; its database is FLUSHED")
    parser.add_argument("--json-out", type=Path, help="write the JSON summary here")
    parser.add_argument("--batch", type=int, default=500, help="router --batch (default 500)")
    parser.add_argument("--threads", type=int, default=8, help="Dramatiq worker threads")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also run the scaling section (rules, processes, ...)",
    )
    parser.add_argument("--only-scaling", action="store_true", help="run the scaling section only")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also run the cluster rows (a local Redis Cluster against a single primary)",
    )
    parser.add_argument("--only-cluster", action="store_true", help="run the cluster rows only")
    parser.add_argument(
        "--charts", type=Path, help="draw the scaling charts (PNG) into this folder"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the router and the chain workers under py-spy; raw stacks into this folder",
    )
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    with ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis()).url
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="resc-bench-")))
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        out = run(args, url, workdir, console)
    out["wall_s"] = time.perf_counter() - started
    report.show(out, console)
    if args.charts and ("scaling" in out or "cluster" in out):
        import charts  # matplotlib: the ``bench`` extra

        for path in charts.draw(out, args.charts):
            console.print(f"chart {path}")
    console.print(f"wall time {out['wall_s']:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

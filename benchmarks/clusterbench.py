"""Cluster rows of the benchmark: the router on a Redis Cluster against a single primary.

Each row prefills events ``acq/i/i`` and times ``resc-dramatiq router`` subprocesses until
every event is committed (the watchers' own counters), on the same server binary:

* single primary (baseline): one watcher, raw target with a dedup set, 1 router;
* cluster, one slot: the same keys, all tagged with the watcher's tag, 1 and 3 routers;
* cluster, spread: each task and its dedup set in a slot of their own
  (``{t<product>}``), so every batch goes through the outbox, 1 and 3 routers;
* cluster, three watchers: one per shard, each with its own keys, 3 routers: how a
  pipeline with several input lists spreads over shards.

The cluster is three primaries with one replica each (``tests/cluster.py``), all on
this machine: replication costs the same CPU it costs in production, on the same cores.

    python benchmarks/clusterbench.py [--events N] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster import LocalCluster, redis_cluster  # noqa: E402
from tests.procs import own_redis, url_of  # noqa: E402

CLI = [sys.executable, "-m", "resc_dramatiq"]
PATTERN = r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$"
#: A tag per shard of the harness's cluster (slot ranges 0-5460, 5461-10922, 10923-16383).
SHARD_TAGS = ("w", "w0", "w1")


@dataclass
class Row:
    """One measured configuration."""

    name: str
    routers: int
    events: int
    seconds: float
    servers_cpu: float  # cores, all server processes together
    routers_cpu: float  # cores, all router processes together

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


def watcher(tag: str, spread: bool) -> dict[str, Any]:
    """A watcher on ``{tag}/in`` with one rule; its task in its own slot when ``spread``."""
    key = "{t${product_id}}" if spread else f"{{{tag}}}/trt"
    make = {"task": "trt/${product_id}", "queue": key, "set": f"{key}/todo"}
    rules = [{"name": "bench", "on": PATTERN, "make": make}]
    return {"input_queue": f"{{{tag}}}/in", "rules": rules}


def measure(
    name: str,
    client: Any,
    url: str,
    workdir: Path,
    servers: list[psutil.Process],
    *,
    tags: tuple[str, ...],
    spread: bool,
    routers: int,
    events: int,
) -> Row:
    """Prefill ``events`` (split over the watchers), start ``routers`` processes, time."""
    config = workdir / f"{name.replace(' ', '-')}-{routers}.json"
    config.write_text(json.dumps({"watchers": [watcher(t, spread) for t in tags]}))
    share = events // len(tags)
    for tag in tags:
        for start in range(0, share, 5000):
            chunk = range(start, min(start + 5000, share))
            client.lpush(f"{{{tag}}}/stage", *(f"acq/{i}/{i}" for i in chunk))
    argv = [*CLI, "router", str(config), "--redis-url", url, "--log-level", "warning"]
    procs = [
        subprocess.Popen([*argv, "--instance", f"b{i}"], stdout=subprocess.DEVNULL)
        for i in range(routers)
    ]
    try:
        deadline = time.monotonic() + 60
        while sum(int(client.zcard(f"{{{t}}}/in/taken/instances")) for t in tags) < routers * len(
            tags
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: routers did not start")
            time.sleep(0.05)
        ps = [psutil.Process(p.pid) for p in procs]
        cpu_before = _cpu(servers), _cpu(ps)
        started = time.perf_counter()
        for tag in tags:
            client.rename(f"{{{tag}}}/stage", f"{{{tag}}}/in")
        while sum(int(client.hget(f"{{{t}}}/in/stats", "events") or 0) for t in tags) < share * len(
            tags
        ):
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"{name}: stalled")
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        servers_cpu = (_cpu(servers) - cpu_before[0]) / seconds
        routers_cpu = (_cpu(ps) - cpu_before[1]) / seconds
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    return Row(name, routers, share * len(tags), seconds, servers_cpu, routers_cpu)


def _cpu(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``processes``."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def run(events: int, workdir: Path) -> list[Row]:
    """Every row, the baseline first."""
    rows = []
    with ExitStack() as stack:
        single = stack.enter_context(own_redis())
        client = redis.Redis(host=single.host, port=single.port)
        server = [psutil.Process(int(client.info("server")["process_id"]))]
        rows.append(
            measure("single primary", client, url_of(single), workdir, server,
                    tags=("w",), spread=False, routers=1, events=events)
        )  # fmt: skip
        client.close()
        cluster: LocalCluster = stack.enter_context(redis_cluster())
        cc = cluster.client()
        servers = [psutil.Process(n.proc.pid) for n in cluster.nodes]
        for name, tags, spread, counts in (
            ("cluster, one slot", ("w",), False, (1, 3)),
            ("cluster, tasks spread over slots", ("w",), True, (1, 3)),
            ("cluster, three watchers on three shards", SHARD_TAGS, False, (3,)),
        ):
            for routers in counts:
                cluster.flush()
                rows.append(
                    measure(name, cc, cluster.url, workdir, servers,
                            tags=tags, spread=spread, routers=routers, events=events)
                )  # fmt: skip
        cc.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.events, Path(tmp))
    base = rows[0].events_per_s
    print(f"{'row':44} {'routers':>7} {'events/s':>10} {'ratio':>6} {'servers':>7} {'routers':>7}")
    for row in rows:
        print(
            f"{row.name:44} {row.routers:>7} {row.events_per_s:>10,.0f} "
            f"{row.events_per_s / base:>6.2f} {row.servers_cpu:>7.2f} {row.routers_cpu:>7.2f}"
        )
    if args.json_out:
        data = [
            asdict(r) | {"events_per_s": r.events_per_s, "ratio": r.events_per_s / base}
            for r in rows
        ]
        args.json_out.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()

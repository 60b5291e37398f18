"""Data between stages: the router on events with a 1 KiB payload against plain events.

``python benchmarks/databench.py [--events N]`` starts the embedded server and routes,
with one ``resc-dramatiq router`` process, ``N`` plain events ``acq/<i>`` on a watcher
without ``data``, then ``N`` envelopes (the same events, each with a payload of 1 KiB:
a path and a filler) on a watcher with ``data: true`` whose rule writes
``${data.path}`` into its task: an envelope is parsed as JSON, and carries its 1 KiB
through the take and the commit. Best of ``--repeat`` alternating runs. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import routerbench  # noqa: E402

from resc_dramatiq.ops.embedded import EmbeddedRedis  # noqa: E402
from resc_dramatiq.rules import data  # noqa: E402

INPUT = "bench/done"


def config(path: Path, *, payload: bool) -> Path:
    task = "t/${n}/${data.path}" if payload else "t/${n}"
    rule = {"name": "bench", "on": r"^acq/(?P<n>\d+)$", "make": {"task": task, "queue": "raw"}}
    watcher: dict[str, Any] = {"input_queue": INPUT, "rules": [rule], "data": payload}
    path.write_text(json.dumps({"watchers": [watcher]}))
    return path


def row(client: redis.Redis, url: str, workdir: Path, *, payload: bool, events: int) -> float:
    """Events per second of one router process."""
    client.flushdb()
    filler = "x" * 1000
    if payload:
        element = lambda n: data.envelope(f"acq/{n}", {"path": f"/v/{n}", "filler": filler})  # noqa: E731
    else:
        element = "acq/{0}".format
    routerbench.prefill(client, "stage", events, event=element)  # type: ignore[arg-type]
    cfg = config(workdir / f"{payload}.json", payload=payload)
    t = routerbench.route(client, url, cfg, stages={"stage": INPUT}, events=events, batch=500)
    if client.llen("raw") != events:
        raise RuntimeError(f"{client.llen('raw')} tasks for {events} events")
    return t.events_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    out: dict[str, Any] = {"plain": 0.0, "payload_1kib": 0.0}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        client = redis.Redis.from_url(server.url)
        for _ in range(args.repeat):  # alternating, best of each
            for name, payload in (("plain", False), ("payload_1kib", True)):
                rate = row(client, server.url, Path(tmp), payload=payload, events=args.events)
                out[name] = max(out[name], rate)
    out["payload / plain"] = out["payload_1kib"] / out["plain"]
    print(json.dumps(out, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Lineage's cost: the router's events/s and the chain's messages/s, lineage off and on.

``python benchmarks/lineagebench.py [--events N] [--chains N] [--repeat K]`` starts the
embedded server and measures, in one run, each row's states back to back in every round
(``--repeat`` rounds, the states' order turned each round):

* the router (one ``resc-dramatiq router`` process, batch 500) on ``N`` new events, the
  rule of ``routerbench.py`` (a dedup set) to a Dramatiq actor, then to a raw list: a
  watcher without ``lineage`` against the same with ``lineage: true`` (a record per
  queued task, two per message, in the commit);
* the chain of ``chainbench.py`` (three no-op actors, one worker process, 8 threads):
  (b) routed in the worker and (c) through the router, with its rules without and with
  ``lineage: true`` (the done events then carry their cause, the commits keep records).

Every rule-made message carries its ``resc_cause`` option either way: "off" is
lineage's records and envelopes off, not the option. ``traced`` is lineage on and
OpenTelemetry on as well (traced.py: an SDK provider, batched spans, dropped): the
router runs with ``--trace``, the worker with ``Tracing`` and ``Completion(lineage=True)``.
``traced-only`` is the same with ``lineage: {records: false}``: the causes and traces
carried, no record kept. Prints JSON with the ratios (best of each state, and the
median of the rounds' own ratios, steadier on a shared machine) and, per chain row, the
worker process's CPU µs per message (median of the runs); the target: >= 0.9 for
the causes and traces (``traced-only``); the records' cost is measured (``on``,
``traced``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import chainbench  # noqa: E402
import routerbench  # noqa: E402
import traced  # noqa: E402

from resc_dramatiq.ops.embedded import EmbeddedRedis  # noqa: E402

#: The states measured: lineage off, on, on with tracing, tracing without records.
STATES = ("off", "on", "traced", "traced-only")
#: What each state puts in the watchers' ``lineage``.
LINEAGE: dict[str, Any] = {"on": True, "traced": True, "traced-only": {"records": False}}


@contextlib.contextmanager
def tracing(on: bool) -> Iterator[None]:
    """Routers started meanwhile run traced (traced.py), workers trace (CHAIN_TRACE)."""
    if not on:
        yield
        return
    plain_cli = routerbench.CLI
    routerbench.CLI = [sys.executable, str(Path(traced.__file__))]
    os.environ[chainbench.chain_worker.TRACE_ENV] = "1"
    try:
        yield
    finally:
        routerbench.CLI = plain_cli
        del os.environ[chainbench.chain_worker.TRACE_ENV]


def with_lineage(path: Path, state: str) -> Path:
    """The config at ``path`` with the ``lineage`` of ``state`` on its watchers."""
    config = json.loads(path.read_text())
    for watcher in config["watchers"]:
        if state in LINEAGE:
            watcher["lineage"] = LINEAGE[state]
    path.write_text(json.dumps(config))
    return path


#: CPU µs per event (router and server processes), the least of each router row's
#: runs: steadier than events/s on a shared machine.
cpu_us: dict[str, float] = {}
#: The worker process's CPU µs per message of each chain row's runs (its throughput
#: phase), their median printed: what a state costs the worker, less shaken than msg/s.
worker_us: dict[str, list[int]] = {}


def router_row(
    client: redis.Redis, url: str, workdir: Path, *, target: str, state: str, events: int
) -> float:
    """Events per second of one router process (``state``: see :data:`STATES`)."""
    client.flushdb()
    routerbench.prefill(client, routerbench.STAGE, events)
    cfg = routerbench.write_config(workdir / f"{target}-{state}.json", target=target)
    with_lineage(cfg, state)
    stages = {routerbench.STAGE: routerbench.INPUT}
    t = routerbench.route(client, url, cfg, stages=stages, events=events, batch=500)
    if bool(client.keys(f"{routerbench.INPUT}/lineage/*")) != (LINEAGE.get(state) is True):
        raise RuntimeError(f"lineage {state}: records written or not, unlike the setting")
    key = f"router {target}, lineage {state}"
    used = round((t.router_cpu + t.server_cpu) * t.seconds / events * 1e6, 2)
    cpu_us[key] = min(cpu_us.get(key, used), used)
    return t.events_per_s


def chain_row(
    client: redis.Redis, url: str, workdir: Path, *, mode: str, state: str, chains: int
) -> float:
    """Messages per second of the chain in ``mode`` (b or c)."""
    plain: Callable[[Path], Path] = chainbench.write_rules
    chainbench.write_rules = lambda path: with_lineage(plain(path), state)  # type: ignore[assignment]
    try:
        result = chainbench.run_chain(
            client, url, workdir, mode=mode, chains=chains, threads=8,
            latency_chains=10, latency_rate=50.0,
        )  # fmt: skip
    finally:
        chainbench.write_rules = plain  # type: ignore[assignment]
    kept = bool(client.keys(f"{chainbench.chain_worker.DONE}/lineage/*"))
    if kept != (LINEAGE.get(state) is True):
        raise RuntimeError(f"lineage {state}: records written or not, unlike the setting")
    key = f"chain ({mode}), lineage {state}"
    used = round(result.worker_cpu * result.seconds / (3 * chains) * 1e6)
    worker_us.setdefault(key, []).append(used)
    return result.messages_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chains", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--off-only", action="store_true", help="only the rows with lineage off (older code)"
    )
    parser.add_argument("--only", choices=("router", "chain"), help="only these rows")
    args = parser.parse_args()
    rows: dict[str, float] = {}
    runs: dict[str, list[float]] = {}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        client, url, workdir = redis.Redis.from_url(server.url), server.url, Path(tmp)
        states = ("off",) if args.off_only else STATES
        for n in range(args.repeat):  # each row's states back to back, their order turned
            order = states[n % len(states) :] + states[: n % len(states)]
            for target in ("actor", "raw") if args.only != "chain" else ():
                for state in order:
                    with tracing(state.startswith("traced")):
                        rate = router_row(
                            client, url, workdir, target=target, state=state, events=args.events
                        )
                    key = f"router {target}, lineage {state}, events/s"
                    rows[key] = max(rows.get(key, 0.0), rate)
                    runs.setdefault(key, []).append(round(rate))
            for mode in ("b", "c") if args.only != "router" else ():
                for state in order:
                    with tracing(state.startswith("traced")):
                        rate = chain_row(
                            client, url, workdir, mode=mode, state=state, chains=args.chains
                        )
                    key = f"chain ({mode}), lineage {state}, msg/s"
                    rows[key] = max(rows.get(key, 0.0), rate)
                    runs.setdefault(key, []).append(round(rate))
    out: dict[str, Any] = dict(rows)
    out["every run"] = runs
    out["CPU µs per event (router + server), least"] = cpu_us
    out["worker CPU µs per message, median of runs"] = {
        k: sorted(v)[len(v) // 2] for k, v in worker_us.items()
    }
    if args.off_only:
        print(json.dumps(out, indent=2))
        return
    whats = [f"router {t}" for t in ("actor", "raw")] if args.only != "chain" else []
    whats += [f"chain ({m})" for m in ("b", "c")] if args.only != "router" else []
    for state in STATES[1:]:
        for what in whats:
            unit = "events/s" if what.startswith("router") else "msg/s"
            on, off = f"{what}, lineage {state}, {unit}", f"{what}, lineage off, {unit}"
            out[f"{what}: {state} / off, best of each"] = round(rows[on] / rows[off], 3)
            # each round's ratio (its states ran back to back), the median: steadier
            ratios = sorted(a / b for a, b in zip(runs[on], runs[off], strict=True))
            out[f"{what}: {state} / off, median of rounds"] = round(ratios[len(ratios) // 2], 3)
    print(json.dumps(out, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

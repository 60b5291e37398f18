"""Three-stage chains of no-op actors through real Dramatiq workers, three ways."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chain_worker
import dramatiq
import psutil
import redis
from routerbench import RouterProcess

WORKER = Path(__file__).with_name("chain_worker.py")
LATENCY_BASE = 10_000_000  # chain ids of the latency phase start here
MODES = {
    "a": "Dramatiq pipeline",
    "b": "Completion, in-worker routing",
    "c": "Completion + router",
}


def write_rules(path: Path) -> Path:
    """s1 done -> s2, s2 done -> s3, on the done list the middleware writes."""

    def rule(src: str, dst: str) -> dict[str, Any]:
        make: dict[str, Any] = {"actor": dst, "queue": chain_worker.QUEUE, "task": f"{dst}/${{i}}"}
        make |= {"kwargs": {"i": "${i}"}}
        return {"name": f"{src} to {dst}", "on": rf"^{src}/(?P<i>\d+)$", "make": make}

    rules = [rule("s1", "s2"), rule("s2", "s3")]
    config = {"watchers": [{"input_queue": chain_worker.DONE, "rules": rules}]}
    path.write_text(json.dumps(config, indent=2))
    return path


def _send(broker: dramatiq.Broker, mode: str, i: int) -> None:
    s1, s2, s3 = (broker.get_actor(n) for n in ("s1", "s2", "s3"))
    if mode == "a":
        dramatiq.pipeline([s1.message(i), s2.message(), s3.message()], broker=broker).run()
    else:
        s1.send(i)


@dataclass
class ChainResult:
    """Chains per second on a prefilled queue, and the latency each hop adds."""

    mode: str
    chains: int
    seconds: float
    enqueue_to_s1_s: list[float]
    hop_s: list[float]  # s1 start -> s2 start and s2 start -> s3 start, at low load
    worker_cpu: float  # CPU seconds per wall second of the worker process (throughput phase)

    @property
    def chains_per_s(self) -> float:
        """Whole chains (three messages each) per second."""
        return self.chains / self.seconds

    @property
    def messages_per_s(self) -> float:
        """Messages per second (three per chain)."""
        return 3 * self.chains_per_s


def _total(client: redis.Redis, key: str) -> int:
    """The sum of the worker processes' fields of ``key``."""
    return sum(int(v) for v in client.hvals(key))


def _wait(client: redis.Redis, key: str, value: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while _total(client, key) < value:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {_total(client, key)} of {value} after {timeout_s} s")
        time.sleep(0.01)


def _chain_router(client: redis.Redis, url: str, rules: Path, mode: str) -> RouterProcess | None:
    """The router of chain (c), started; None for the other modes."""
    if mode != "c":
        return None
    ready = f"{chain_worker.DONE}/taken/instances"
    router = RouterProcess(config=rules, url=url, batch=500, ready_key=ready)
    router.start(client)
    return router


def _stop(proc: psutil.Process | subprocess.Popen[bytes], worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc`` (the worker, or what runs it) and wait for ``worker`` to end."""
    proc.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(5)


def run_chain(
    client: redis.Redis,
    url: str,
    workdir: Path,
    *,
    mode: str,
    chains: int,
    threads: int,
    latency_chains: int,
    latency_rate: float,
    profile: Path | None = None,
) -> ChainResult:
    """Prefill ``chains`` chains, start the worker, time them; then paced ones for latency."""
    client.flushdb()
    rules = write_rules(workdir / "chain-rules.json")
    out = workdir / f"chain-{mode}.json"
    broker = chain_worker.build(mode, url, str(rules))  # the sender's side of the actors
    for i in range(chains):
        _send(broker, mode, i)
    router = _chain_router(client, url, rules, mode)
    argv = [sys.executable, str(WORKER), mode, url, str(threads), str(rules), str(out)]
    log = (workdir / f"chain-{mode}.log").open("wb")
    if profile is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [spy, "record", "-r", "250", "-f", "raw", "-o", str(profile), "--", *argv]
    worker = subprocess.Popen(argv, stdout=log, stderr=log)
    proc = psutil.Process(worker.pid)
    try:
        _wait(client, chain_worker.READY, 1, 60, f"chain {mode} worker start")
        proc = proc.children()[0] if profile is not None else proc
        cpu_before, wall_before = sum(proc.cpu_times()[:2]), time.perf_counter()
        _wait(client, chain_worker.FINISHED, chains, 300, f"chain {mode} throughput")
        cpu = (sum(proc.cpu_times()[:2]) - cpu_before) / (time.perf_counter() - wall_before)
        sent: dict[int, float] = {}
        started = time.perf_counter()
        for k in range(latency_chains):
            time.sleep(max(0.0, started + k / latency_rate - time.perf_counter()))
            sent[LATENCY_BASE + k] = time.time()
            _send(broker, mode, LATENCY_BASE + k)
        _wait(client, chain_worker.FINISHED, chains + latency_chains, 60, f"chain {mode} latency")
    finally:
        _stop(proc, worker)  # the worker itself, not py-spy around it
        if router is not None:
            router.stop()
        broker.close()
        log.close()
    data = json.loads(out.read_text())
    starts = {int(k): v for k, v in data["starts"].items()}
    bulk = [starts[i] for i in range(chains)]
    seconds = max(s[2] for s in bulk) - min(s[0] for s in bulk)
    paced = [(starts[i], t) for i, t in sent.items()]
    return ChainResult(
        mode=mode,
        chains=chains,
        seconds=seconds,
        enqueue_to_s1_s=[s[0] - t for s, t in paced],
        hop_s=[s[1] - s[0] for s, _ in paced] + [s[2] - s[1] for s, _ in paced],
        worker_cpu=cpu,
    )


def parallel_chains(
    client: redis.Redis,
    url: str,
    workdir: Path,
    *,
    mode: str,
    chains: int,
    threads: int,
    processes: int,
) -> float:
    """Messages per second of ``chains`` prefilled chains through ``processes`` workers.

    Timed from the first s1 start to the last s3 start over every process's records (a
    chain's stages may run in different processes).
    """
    client.flushdb()
    rules = write_rules(workdir / "chain-rules.json")
    broker = chain_worker.build(mode, url, str(rules))
    for i in range(chains):
        _send(broker, mode, i)
    router = _chain_router(client, url, rules, mode)
    outs = [workdir / f"chain-{mode}-{k}.json" for k in range(processes)]
    logs = [(workdir / f"chain-{mode}-{k}.log").open("wb") for k in range(processes)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), mode, url, str(threads), str(rules), str(out)],
            stdout=log,
            stderr=log,
        )
        for out, log in zip(outs, logs, strict=True)
    ]
    try:
        _wait(client, chain_worker.READY, processes, 60, f"chain {mode} workers start")
        _wait(client, chain_worker.FINISHED, chains, 300, f"chain {mode} x{processes}")
    finally:
        for worker in workers:
            _stop(worker, worker)
        if router is not None:
            router.stop()
        broker.close()
        for log in logs:
            log.close()
    starts: dict[int, list[float]] = {}
    for out in outs:
        for k, v in json.loads(out.read_text())["starts"].items():
            merged = starts.setdefault(int(k), [0.0, 0.0, 0.0])
            starts[int(k)] = [max(a, b) for a, b in zip(merged, v, strict=True)]
    seconds = max(s[2] for s in starts.values()) - min(s[0] for s in starts.values())
    return 3 * chains / seconds

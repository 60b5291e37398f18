"""The router as a real subprocess: throughput on a prefilled list, RSS, paced latency."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

INPUT = "bench/in"
STAGE = "bench/stage"  # prefilled here, then renamed onto INPUT in one O(1) step
INSTANCES = f"{INPUT}/taken/instances"
CHANNEL = "bench/listen"
PATTERN = r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$"
TASK = "trt/${process_id}/${product_id}"
RAW_QUEUE = "bench/todo"
DEDUP_SET = "bench/todo/set"
ACTOR_QUEUE = "bench-q"
#: ``resc-dramatiq`` as this interpreter runs it (the console script's own entry point).
CLI = [sys.executable, "-m", "resc_dramatiq"]


def write_config(path: Path, *, target: str, listener: bool = False) -> Path:
    """The benchmark's rule: one regex with two named groups, one dedup set."""
    make: dict[str, Any] = {"task": TASK, "set": DEDUP_SET}
    make.update(
        {"queue": RAW_QUEUE} if target == "raw" else {"actor": "stage", "queue": ACTOR_QUEUE}
    )
    config: dict[str, Any] = {
        "watchers": [
            {"input_queue": INPUT, "rules": [{"name": "bench", "on": PATTERN, "make": make}]}
        ]
    }
    if listener:
        config["listener_channel"] = CHANNEL
    path.write_text(json.dumps(config, indent=2))
    return path


def prefill(
    client: redis.Redis,
    key: str,
    count: int,
    *,
    event: Callable[[int], str] = "acq/{0}/{0}".format,
    chunk: int = 1000,
) -> None:
    """LPUSH ``event(i)`` (``acq/i/i``) for i in 0..count-1 in pipelined chunks, oldest first."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, chunk):
        pipe.lpush(key, *(event(i) for i in range(start, min(start + chunk, count))))
        if len(pipe) >= 50:
            pipe.execute()
    pipe.execute()


@dataclass
class RouterProcess:
    """``resc-dramatiq router`` in a subprocess, optionally under py-spy."""

    config: Path
    url: str
    batch: int
    profile: Path | None = None
    ready_key: str = INSTANCES
    processes: int = 1  # ``--processes``: the routers are the supervisor's children
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, client: redis.Redis, timeout_s: float = 30.0) -> psutil.Process:
        """Start it and wait until every instance registered; return the router (or the
        supervisor of ``processes`` routers)."""
        self.log = self.config.with_suffix(".log")
        with self.log.open("wb") as log:  # a pipe nobody reads would block the router
            self.proc = subprocess.Popen(self._argv(), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while client.zcard(self.ready_key) < self.processes:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"router did not start: {self._stderr()}")
            time.sleep(0.02)
        return self._router()

    def _argv(self) -> list[str]:
        argv = [*CLI, "router", str(self.config), "--redis-url", self.url]
        argv += ["--batch", str(self.batch), "--log-level", "warning"]
        argv += ["--processes", str(self.processes)]
        if self.profile is None:
            return argv
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        return [spy, "record", "-r", "250", "-f", "raw", "-o", str(self.profile), "--", *argv]

    def _router(self) -> psutil.Process:
        assert self.proc is not None
        parent = psutil.Process(self.proc.pid)
        if self.profile is None:
            return parent
        deadline = time.monotonic() + 10
        while not parent.children() and time.monotonic() < deadline:
            time.sleep(0.02)
        return parent.children()[0]

    def _stderr(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log else ""

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (the router finishes its batch and exits), SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        target = self._router() if self.profile is not None else None
        (target or psutil.Process(self.proc.pid)).send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Throughput:
    """Events routed per second on a prefilled input list, and the router's memory."""

    target: str
    events: int
    seconds: float
    first_commit_s: float
    queued: int
    rss_start_mb: float
    rss_peak_mb: float
    rss_marks_mb: dict[int, float] = field(default_factory=dict)
    router_cpu: float = 0.0  # CPU seconds per wall second (1.0 = one core busy)
    server_cpu: float = 0.0

    @property
    def events_per_s(self) -> float:
        """The headline figure."""
        return self.events / self.seconds


def _events_done(client: redis.Redis, stats: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in stats:
        pipe.hget(key, "events")
    return sum(int(v) for v in pipe.execute() if v is not None)


def throughput(
    client: redis.Redis,
    url: str,
    workdir: Path,
    *,
    target: str,
    events: int,
    batch: int,
    marks: tuple[int, ...] = (),
    profile: Path | None = None,
    processes: int = 1,
    timeout_s: float = 300.0,
) -> Throughput:
    """Prefill ``events``, start the router, time until every event is committed."""
    client.flushdb()
    config = write_config(workdir / f"bench-{target}.json", target=target)
    prefill(client, STAGE, events)
    result = route(
        client, url, config, stages={STAGE: INPUT}, events=events, batch=batch,
        marks=marks, profile=profile, processes=processes, timeout_s=timeout_s,
    )  # fmt: skip
    queue = RAW_QUEUE if target == "raw" else f"dramatiq:{ACTOR_QUEUE}"
    return dataclasses.replace(result, target=target, queued=client.llen(queue))


def route(
    client: redis.Redis,
    url: str,
    config: Path,
    *,
    stages: dict[str, str],
    events: int,
    batch: int,
    marks: tuple[int, ...] = (),
    profile: Path | None = None,
    processes: int = 1,
    timeout_s: float = 300.0,
) -> Throughput:
    """Start the router on ``config``, move each prefilled stage list onto its input list
    (``stages``: stage -> input, one O(1) RENAME each) and time until ``events`` are
    committed, counted by the watchers' own counters.
    """
    router = RouterProcess(
        config=config, url=url, batch=batch, profile=profile, processes=processes,
        ready_key=f"{next(iter(stages.values()))}/taken/instances",
    )  # fmt: skip
    top = router.start(client)
    routers = top.children() if processes > 1 else [top]
    server = psutil.Process(int(client.info("server")["process_id"]))
    stats = [f"{i}/stats" for i in stages.values()]
    try:
        cpu_before = _cpu(routers), _cpu([server])
        rss_start = _rss(routers)
        peak, rss_marks, pending = rss_start, {}, sorted(marks)
        started = time.perf_counter()
        for stage, input_list in stages.items():
            client.rename(stage, input_list)
        first = 0.0
        while (done := _events_done(client, stats)) < events:
            rss = _rss(routers)
            peak = max(peak, rss)
            if done and not first:
                first = time.perf_counter() - started
            while pending and done >= pending[0]:
                rss_marks[pending.pop(0)] = rss / 2**20
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"router stalled at {done}/{events} events")
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        cpu_after = _cpu(routers), _cpu([server])
        rss = _rss(routers)
        peak = max(peak, rss)
        rss_marks[events] = rss / 2**20
    finally:
        router.stop()
    return Throughput(
        target=config.stem,
        events=events,
        seconds=seconds,
        first_commit_s=first,
        queued=0,
        rss_start_mb=rss_start / 2**20,
        rss_peak_mb=peak / 2**20,
        rss_marks_mb=rss_marks,
        router_cpu=(cpu_after[0] - cpu_before[0]) / seconds,
        server_cpu=(cpu_after[1] - cpu_before[1]) / seconds,
    )


def _cpu(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs``."""
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _rss(procs: list[psutil.Process]) -> int:
    """The largest resident set of ``procs`` (each router is its own process)."""
    return max(p.memory_info().rss for p in procs)


@dataclass
class Latency:
    """Event-to-commit latency at a fixed offered load, seen from a DONE subscriber."""

    offered_per_s: float
    sent: int
    received: int
    latencies_s: list[float]

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latencies, in seconds."""
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _subscribe(
    client: redis.Redis, got: list[float], ready: threading.Event, stop: threading.Event
) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    pubsub.get_message(timeout=5, ignore_subscribe_messages=False)  # the confirmation
    ready.set()
    while not stop.is_set():
        message = pubsub.get_message(timeout=0.2)
        if message is None:
            continue
        data: bytes = message["data"]
        now = time.time()
        _, sep, event = data.partition(b" DONE ")
        if sep:
            sent_us = int(event.split(b"/")[1])
            got.append(now - sent_us / 1e6)
    pubsub.close()


def latency(
    client: redis.Redis, url: str, workdir: Path, *, rate: int, seconds: float, batch: int
) -> Latency:
    """Offer ``rate`` events/s for ``seconds`` in small paced chunks; time each to its DONE.

    Each event carries its push time (``acq/<unix µs>/<i>``); the router publishes
    ``<taken> DONE <event>`` from inside the commit script, so receive time minus push
    time is the event-to-commit latency plus one pub/sub delivery.
    """
    client.flushdb()
    config = write_config(workdir / "bench-latency.json", target="raw", listener=True)
    router = RouterProcess(config=config, url=url, batch=batch)
    router.start(client)
    total = int(rate * seconds)
    got: list[float] = []
    stop, ready = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=_subscribe, args=(redis.Redis.from_url(url), got, ready, stop), daemon=True
    )
    listener.start()
    if not ready.wait(10):
        raise RuntimeError("the DONE subscriber did not subscribe")
    try:
        chunk = max(1, rate // 1000)  # one LPUSH per millisecond
        started = time.perf_counter()
        for sent in range(0, total, chunk):
            wait = started + sent / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            now_us = int(time.time() * 1e6)
            client.lpush(INPUT, *(f"acq/{now_us}/{i}" for i in range(sent, sent + chunk)))
        offered = total / (time.perf_counter() - started)
        deadline = time.monotonic() + 10
        while len(got) < total and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        listener.join(5)
        router.stop()
    return Latency(offered_per_s=offered, sent=total, received=len(got), latencies_s=list(got))


def baseline_events_per_s(client: redis.Redis, events: int) -> float:
    """resc's own loop (``baseline.py``) on ``events`` events of the benchmark's rule: the
    baseline every ratio of a run is measured against, in that run."""
    import baseline  # beside this file, as the scripts that import this module

    prefill(client, "bench/base", events)
    rule = baseline.RescRule(
        re.compile(PATTERN), "trt/{process_id}/{product_id}", "base/todo", "base/set"
    )
    seconds = baseline.run_resc_loop(
        client, input_queue="bench/base", taken_queue="bench/base/taken", rule=rule,
        events=events,
    )  # fmt: skip
    return events / seconds

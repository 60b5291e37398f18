"""The one-command demo: a Redis, the router, real Dramatiq workers, and a verdict.

:func:`run_demo` starts an embedded server (unless given a URL; it needs the
``embedded`` extra, else :class:`~.embedded.EmbeddedUnavailable`), the router and a
``dramatiq`` worker fleet on ``example_project`` as child processes in their own
process groups, feeds root events (each twice: the dedup set drops the copies), waits
until every done event is routed, then checks that every expected task ran exactly
once and that every report's stored result can be fetched from this process.
With a ``dashboard_port`` it also runs ``resc-dramatiq dashboard`` on the example's
rules, says its address once it answers, and (``linger``) keeps everything running
after the verdict for as long as the caller wants to look. Whatever happens (an error,
Ctrl-C), every process it started is stopped.

Only keys of the example are touched: ``example/*``, ``example-results:*`` and the
Dramatiq queues ``dramatiq:example-*``.

Over ~250 lines on purpose: the demo's processes, their stop and its verdict are one
command's story.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from ..errors import RescError
from ..store.connect import connect
from ..store.keyspace import counters, text
from .embedded import EmbeddedRedis
from .example import example_project
from .supervisor import die_with_parent

DONE = "example/done"
RUNS = "example/runs"
STAGES = {"treat": "trt/", "propagate": "prop/", "report": "rep/", "summarize": "sum/"}
EXAMPLE_KEYS = ("example/*", "example-results:*", "dramatiq:example-*")


class DemoError(RescError):
    """Raised when the demo cannot run: a process died, a timeout."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo runs: its Redis, how many root events, how many workers."""

    redis_url: str | None = None
    events: int = 20
    processes: int = 2
    threads: int = 4
    timeout_s: float = 60.0
    project: Path = field(default_factory=example_project)
    dashboard_port: int | None = None  # also run the dashboard, on 127.0.0.1 and this port


def expected_tasks(events: int) -> dict[str, list[str]]:
    """Stage -> the task strings ``events`` distinct acquisitions must produce."""
    products = [(1 + i % 3, 100 + i) for i in range(events)]
    return {
        "treat": [f"trt/{p}/{q}" for p, q in products],
        "propagate": [f"prop/{p}/{q}/{c}" for p, q in products for c in "ab"],
        "report": [f"rep/{p}/{q}/{c}" for p, q in products for c in "ab"],
        "summarize": [f"sum/{p}/{q}" for p, q in products],  # a join: once per product
    }


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What the demo saw and whether it is right."""

    events: int
    runs: Mapping[str, int]
    expected: Mapping[str, list[str]]
    stats: Mapping[str, int]
    results: Mapping[str, Any]
    elapsed_s: float

    @property
    def problems(self) -> list[str]:
        """Every deviation from "each task ran exactly once"; empty when all is well."""
        wanted = {t for tasks in self.expected.values() for t in tasks}
        found = [f"{t} never ran" for t in sorted(wanted - set(self.runs))]
        found += [f"{t} ran {n} times" for t, n in sorted(self.runs.items()) if n != 1]
        found += [f"{t} was not expected" for t in sorted(set(self.runs) - wanted)]
        if self.stats.get("deduplicated", 0) != self.events:
            dropped = self.stats.get("deduplicated", 0)
            found.append(f"{dropped} duplicates dropped, not {self.events}")
        missing = set(self.expected["report"]) - set(self.results)
        found += [f"no stored result for {t}" for t in sorted(missing)]
        return found


class Fleet:
    """Child processes, each in its own process group; leaving the block stops them all."""

    def __init__(self, *, cwd: Path, env: Mapping[str, str], log_dir: Path) -> None:
        self.cwd, self.env, self.log_dir = cwd, dict(env), log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        """Start ``argv``, its output going to ``<log_dir>/<name>.log``."""
        with open(self.log_dir / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group: dramatiq's forks included
                preexec_fn=die_with_parent(),  # and stopped if the demo is killed outright
            )

    def check(self) -> None:
        """Raise :class:`DemoError` when a process has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise DemoError(f"{name} exited with {process.returncode}:\n{log}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every group, wait, then SIGKILL whatever is left."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in self.processes.values():
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
            deadline = time.monotonic() + timeout_s
            for process in self.processes.values():
                with suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))
            if all(p.poll() is not None for p in self.processes.values()):
                return

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def clean(client: redis.Redis) -> None:
    """Delete the keys of a previous demo run (only the example's)."""
    for pattern in EXAMPLE_KEYS:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


def run_demo(
    options: DemoOptions,
    *,
    on_progress: Callable[[Mapping[str, int]], None] | None = None,
    on_dashboard: Callable[[str], None] | None = None,
    linger: Callable[[DemoReport], None] | None = None,
) -> DemoReport:
    """Run the whole demo and return what it saw; raise :class:`DemoError` on a failure.

    ``on_dashboard`` is told the dashboard's address once it answers; ``linger`` is
    called with the report while every process still runs (the dashboard can be looked
    at), and the demo ends when it returns.
    """
    started = time.monotonic()
    with ExitStack() as stack:
        url = options.redis_url or stack.enter_context(EmbeddedRedis()).url
        client = connect(url)
        stack.callback(client.close)
        clean(client)
        fleet = _start_fleet(stack, options, url)
        if options.dashboard_port is not None:
            address = _dashboard(fleet, options, url, options.dashboard_port)
            if on_dashboard is not None:
                on_dashboard(address)
        producer, fetch = _example_modules(options.project)
        events = [e for event in producer.root_events(options.events) for e in (event, event)]
        client.lpush(DONE, *events)
        expected = expected_tasks(options.events)
        leaves = len(expected["summarize"])  # the join's actor emits no done event
        routed = len(events) + sum(len(tasks) for tasks in expected.values()) - leaves
        deadline = started + options.timeout_s
        while _stats(client).get("events", 0) < routed or _progress(client)["summarize"] < leaves:
            fleet.check()
            if on_progress is not None:
                on_progress(_progress(client))
            if time.monotonic() > deadline:
                raise DemoError(f"not done after {options.timeout_s:.0f}s; logs in {fleet.log_dir}")
            time.sleep(0.1)
        if on_progress is not None:
            on_progress(_progress(client))
        runs = counters(client, RUNS)
        results = fetch.fetch_results(url)
        report = DemoReport(
            options.events, runs, expected, _stats(client), results, time.monotonic() - started
        )
        if linger is not None:
            linger(report)
        return report


def _start_fleet(stack: ExitStack, options: DemoOptions, url: str) -> Fleet:
    root = options.project.parent
    env = {**os.environ, "RESC_REDIS_URL": url, "PYTHONPATH": str(root)}
    log_dir = Path(tempfile.mkdtemp(prefix="resc-demo-"))
    fleet = stack.enter_context(Fleet(cwd=root, env=env, log_dir=log_dir))
    app = f"{options.project.name}.app"
    config = str(options.project / "pipeline.hjson")
    router = ["router", config, "--app", f"{app}:broker", "--redis-url", url]
    fleet.start("router", [sys.executable, "-m", "resc_dramatiq", *router, "--log-level=warning"])
    sizes = ["--processes", str(options.processes), "--threads", str(options.threads)]
    fleet.start("workers", [sys.executable, "-m", "dramatiq", app, "--path", str(root), *sizes])
    return fleet


def _dashboard(fleet: Fleet, options: DemoOptions, url: str, port: int) -> str:
    """Start the dashboard of the example's rules; its address once it answers."""
    app = f"{options.project.name}.app:broker"
    config = str(options.project / "pipeline.hjson")
    argv = ["dashboard", config, "--app", app, "--redis-url", url, "--port", str(port)]
    fleet.start("dashboard", [sys.executable, "-m", "resc_dramatiq", *argv])
    deadline = time.monotonic() + 30
    while True:
        fleet.check()
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return f"http://127.0.0.1:{port}/"
        if time.monotonic() > deadline:
            raise DemoError(f"the dashboard did not answer on port {port}; logs in {fleet.log_dir}")
        time.sleep(0.1)


def _example_modules(project: Path) -> tuple[Any, Any]:
    if str(project.parent) not in sys.path:
        sys.path.insert(0, str(project.parent))
    return (
        importlib.import_module(f"{project.name}.producer"),
        importlib.import_module(f"{project.name}.fetch_reports"),
    )


def _stats(client: redis.Redis) -> dict[str, int]:
    return counters(client, f"{DONE}/stats")


def _progress(client: redis.Redis) -> dict[str, int]:
    counts = dict.fromkeys(STAGES, 0)
    for task in client.hkeys(RUNS):
        for stage, prefix in STAGES.items():
            if text(task).startswith(prefix):
                counts[stage] += 1
    return counts

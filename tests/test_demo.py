"""``resc-dramatiq demo``: end to end in a subprocess, and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest
import redis

from resc_dramatiq.ops.demo import DemoReport, expected_tasks
from tests.helpers import wait_for
from tests.procs import free_port

ROOT = Path(__file__).parent.parent


def marked(marker: str) -> list[psutil.Process]:
    """Live processes carrying ``RESC_DEMO_TEST=marker`` in their environment."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("RESC_DEMO_TEST") == marker and process.status() != "zombie":
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def start_demo(*args: str) -> tuple[subprocess.Popen[str], str]:
    marker = uuid.uuid4().hex
    env = {**os.environ, "RESC_DEMO_TEST": marker}
    cmd = [sys.executable, "-m", "resc_dramatiq", "demo", *args]
    demo = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return demo, marker


def test_the_demo_verifies_the_pipeline_on_a_given_redis(redis_url: str, r: redis.Redis) -> None:
    demo, marker = start_demo("--redis-url", redis_url, "--events", "6")
    output, _ = demo.communicate(timeout=90)
    assert demo.returncode == 0, output
    assert "verified: every task ran exactly once" in output
    assert "duplicates dropped 6" in output
    assert r.hlen("example/runs") == 36  # 6 treat, 12 propagate, 12 report, 6 summarize
    assert r.hget("example/done/stats", "@on_done summarize|completed") == b"6"  # the join
    assert marked(marker) == []


def test_the_demo_runs_on_its_embedded_redis() -> None:
    demo, marker = start_demo("--events", "3")
    output, _ = demo.communicate(timeout=90)
    assert demo.returncode == 0, output
    assert "verified" in output
    assert marked(marker) == []


@contextmanager
def nothing_left(marker: str, started: list[psutil.Process]) -> Iterator[None]:
    """Kill whatever the demo left behind when the block ends (marked, or among the
    processes it ``started``), so that a failing test leaves no orphan: the assertions
    inside say what was left."""
    try:
        yield
    finally:
        for process in marked(marker) + started:
            with suppress(psutil.NoSuchProcess):
                process.kill()


def alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def children_up(demo: subprocess.Popen[str]) -> list[psutil.Process]:
    """The demo's descendants once all run: its embedded server, the router, dramatiq's
    main process and its worker, the dashboard. (The server rewrites its
    environment for its process title: it is found as a child, not by the marker.)"""
    found = psutil.Process(demo.pid).children(recursive=True)
    return found if len(found) >= 5 else []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_stops_every_process_the_demo_started(signum: int) -> None:
    demo, marker = start_demo(
        "--events", "1000", "--processes", "1", "--threads", "1", "--timeout", "100",
        "--dashboard", "--dashboard-port", str(free_port()),
    )  # fmt: skip
    started: list[psutil.Process] = []
    with nothing_left(marker, started):
        try:
            started += wait_for(lambda: children_up(demo), timeout_s=60, what="every child")
        finally:
            demo.send_signal(signum)  # to the demo alone, as `kill` does
            output, _ = demo.communicate(timeout=60)
        assert demo.returncode == 130, output
        assert "interrupted" in output
        assert [p for p in started if alive(p)] == []
        assert marked(marker) == []


def test_a_report_lists_every_deviation_from_exactly_once() -> None:
    expected = expected_tasks(1)
    runs = {t: 1 for tasks in expected.values() for t in tasks} | {"trt/1/100": 2, "x": 1}
    del runs["rep/1/100/b"]
    report = DemoReport(1, runs, expected, {"deduplicated": 1}, {"rep/1/100/a": {}}, 0.1)
    assert report.problems == [
        "rep/1/100/b never ran",
        "trt/1/100 ran 2 times",
        "x was not expected",
        "no stored result for rep/1/100/b",
    ]

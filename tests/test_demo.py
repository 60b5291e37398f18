"""``resc-dramatiq demo``: end to end in a subprocess, and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import redis

from resc_dramatiq.ops.demo import DemoReport, expected_tasks

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
    assert r.hlen("example/runs") == 30
    assert marked(marker) == []


def test_the_demo_runs_on_its_embedded_redis() -> None:
    demo, marker = start_demo("--events", "3")
    output, _ = demo.communicate(timeout=90)
    assert demo.returncode == 0, output
    assert "verified" in output
    assert marked(marker) == []


def test_ctrl_c_stops_every_process_the_demo_started(redis_url: str) -> None:
    demo, marker = start_demo(
        "--redis-url", redis_url, "--events", "1000", "--threads", "1", "--timeout", "100"
    )
    try:
        deadline = time.monotonic() + 30
        while len(marked(marker)) < 4 and time.monotonic() < deadline:  # demo, router, workers
            time.sleep(0.1)
        assert len(marked(marker)) >= 4
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130, output
    assert "interrupted" in output
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

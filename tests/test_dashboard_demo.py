"""``resc-dramatiq demo --dashboard``: the dashboard beside the demo, its address said,
showing the example's pipeline, until Ctrl-C or SIGTERM ends it all."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import psutil
import pytest

from tests.procs import free_port
from tests.test_demo import alive, marked, nothing_left, start_demo


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_demo_with_dashboard_serves_the_example_pipeline_until_a_signal_stops_it_all(
    redis_url: str, signum: int
) -> None:
    port = free_port()
    demo, marker = start_demo(
        "--redis-url", redis_url, "--events", "3", "--processes", "1", "--threads", "2",
        "--dashboard", "--dashboard-port", str(port),
    )  # fmt: skip
    lines: list[str] = []
    started: list[psutil.Process] = []
    with nothing_left(marker, started):
        watch_until_a_signal(demo, signum, lines, started, port)
    output = "".join(lines)
    assert demo.returncode == 0, output
    assert len(started) >= 4  # the router, dramatiq and its workers, the dashboard
    assert [p for p in started if alive(p)] == []
    assert marked(marker) == []


def watch_until_a_signal(
    demo: subprocess.Popen[str],
    signum: int,
    lines: list[str],
    started: list[psutil.Process],
    port: int,
) -> None:
    """Read the demo's output until it lingers, look at the dashboard, note the demo's
    processes in ``started``, then send ``signum`` and read the rest into ``lines``."""
    assert demo.stdout is not None
    try:
        deadline = time.monotonic() + 90
        while not any("Ctrl-C to stop" in line for line in lines):
            line = demo.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        output = "".join(lines)
        assert f"dashboard at http://127.0.0.1:{port}/" in output
        assert "verified: every task ran exactly once" in output
        page = httpx.get(f"http://127.0.0.1:{port}/pipeline", timeout=10).text
        assert "example/done" in page
        started += psutil.Process(demo.pid).children(recursive=True)
    finally:
        demo.send_signal(signum)  # to the demo alone, as `kill` or `timeout` does
        rest, _ = demo.communicate(timeout=60)
        lines.append(rest)

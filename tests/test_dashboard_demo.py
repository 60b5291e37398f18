"""``resc-dramatiq demo --dashboard``: the dashboard beside the demo, its address said,
showing the example's pipeline, until Ctrl-C ends it all."""

from __future__ import annotations

import signal
import time

import httpx

from tests.procs import free_port
from tests.test_demo import marked, start_demo


def test_the_demo_with_dashboard_prints_its_address_and_serves_the_example_pipeline(
    redis_url: str,
) -> None:
    port = free_port()
    demo, marker = start_demo(
        "--redis-url", redis_url, "--events", "3", "--processes", "1", "--threads", "2",
        "--dashboard", "--dashboard-port", str(port),
    )  # fmt: skip
    assert demo.stdout is not None
    lines: list[str] = []
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
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, output + rest
    assert marked(marker) == []

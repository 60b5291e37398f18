"""Secure connections: ACL users with passwords and TLS (``rediss://``).

Passwords never appear in logs, output or error messages.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from pytest_redis.executor import RedisExecutor

from resc_dramatiq.cli.common import safe_url
from resc_dramatiq.worker.completion import Completion
from tests.helpers import wait_for

from .tls_proxy import tls_proxy

EXAMPLES = Path(__file__).parent.parent / "example_project"
CLI = [sys.executable, "-m", "resc_dramatiq"]
PASSWORD = "s3cret-Pa55word-never-shown"


@pytest.fixture
def acl_url(redis_proc: RedisExecutor, r: redis.Redis) -> Iterator[str]:
    """A URL with an ACL user and password on the session's Redis."""
    r.acl_setuser(
        "router", enabled=True, reset=True, passwords=[f"+{PASSWORD}"],
        keys=["*"], channels=["*"], commands=["+@all"],
    )  # fmt: skip
    yield f"redis://router:{PASSWORD}@{redis_proc.host}:{redis_proc.port}/0"
    r.acl_deluser("router")


def run_router(url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "router", str(EXAMPLES / "demo.conf.json"), "--redis-url", url, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def route_one_event(url: str, r: redis.Redis) -> str:
    """Run a router on ``url``, push an event through ``push``, return all CLI output."""
    router = run_router(url, "--log-level", "debug")
    try:
        pushed = subprocess.run(
            [*CLI, "push", "--redis-url", url, "global/done", "acq/7/8"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        wait_for(lambda: r.llen("trt/7/todo") == 1)
    finally:
        router.send_signal(signal.SIGTERM)
        out, _ = router.communicate(timeout=15)
    assert router.returncode == 0, out
    return out + pushed.stdout + pushed.stderr


def test_an_acl_user_with_a_password_routes_and_its_password_is_never_printed(
    acl_url: str, r: redis.Redis
) -> None:
    output = route_one_event(acl_url, r)
    assert r.lrange("trt/7/todo", 0, -1) == [b"trt/7/8"]
    assert PASSWORD not in output


def test_a_wrong_password_fails_clearly_without_showing_it(
    redis_proc: RedisExecutor, acl_url: str
) -> None:
    wrong = f"redis://router:not-{PASSWORD}@{redis_proc.host}:{redis_proc.port}/0"
    result = subprocess.run(
        [*CLI, "push", "--redis-url", wrong, "global/done", "acq/1/2"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot push" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_safe_url_masks_only_the_password() -> None:
    assert safe_url(f"rediss://u:{PASSWORD}@h:1/0") == "rediss://u:***@h:1/0"
    assert safe_url("redis://h:1/0") == "redis://h:1/0"


def test_router_and_push_work_over_tls(
    redis_proc: RedisExecutor, r: redis.Redis, tmp_path: Path
) -> None:
    with tls_proxy(redis_proc.port, tmp_path) as (port, ca_file):
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}"
        route_one_event(url, r)
    assert r.zscore("products/8/todo", "trt/7/8") is not None


def test_plain_text_to_the_tls_port_is_refused(
    redis_proc: RedisExecutor, r: redis.Redis, tmp_path: Path
) -> None:
    with tls_proxy(redis_proc.port, tmp_path) as (port, _):
        result = subprocess.run(
            [*CLI, "push", "--redis-url", f"redis://127.0.0.1:{port}/0", "global/done", "x"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert r.llen("global/done") == 0


def test_the_completion_middleware_emits_done_events_over_tls(
    redis_proc: RedisExecutor, r: redis.Redis, tmp_path: Path
) -> None:
    with tls_proxy(redis_proc.port, tmp_path) as (port, ca_file):
        broker = RedisBroker(url=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}")
        broker.add_middleware(Completion(), before=Retries)

        @dramatiq.actor(broker=broker, done_event="tls/${n}", done_queue="tls/done")
        def work(n: int) -> None:
            pass

        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            work.send(5)
            wait_for(lambda: r.lrange("tls/done", 0, -1) == [b"tls/5"])
        finally:
            worker.stop()
            broker.close()
            broker.client.connection_pool.disconnect()

"""The ``router`` and ``push`` commands as real processes: signals, exit codes, restarts."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from tests.helpers import wait_for
from tests.procs import CLI, routers

DONE = "global/done"
CONFIG = {
    "watchers": [
        {
            "input_queue": DONE,
            "rules": [
                {
                    "on": r"^acq/(?P<n>\d+)$",
                    "make": {"task": "log/${n}", "queue": "log"},
                }
            ],
        }
    ]
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cli.json"
    path.write_text(json.dumps(CONFIG))
    return path


def routed(r: redis.Redis) -> int:
    return int(r.hget(f"{DONE}/stats", "events") or 0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_makes_the_router_finish_its_batch_and_exit_0(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path, signum: int
) -> None:
    count = 20_000
    r.lpush(DONE, *[f"acq/{i}" for i in range(count)])
    with routers(config=config, redis_url=redis_url, log=tmp_path / "router.log") as start:
        process = start(instance="a", batch=100)
        wait_for(lambda: routed(r) > 1000, what="routing is under way")
        assert process.signal(signum) == 0
    done = routed(r)
    assert 0 < done < count  # it stopped mid-stream...
    assert r.llen("log") == done  # ...after committing every batch it had taken
    assert r.llen(DONE) == count - done
    assert r.llen(f"{DONE}/taken/a") == 0
    assert r.zscore(f"{DONE}/taken/instances", "a") is None  # it left the fleet
    assert "handed back" not in process.output()  # nothing was left uncommitted


def test_push_lpushes_root_events_as_a_producer_does(r: redis.Redis, redis_url: str) -> None:
    result = subprocess.run(
        [CLI, "push", "--redis-url", redis_url, DONE, "acq/1", "acq/2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"pushed 2 event(s) onto {DONE!r}\n"
    assert r.lrange(DONE, 0, -1) == [b"acq/2", b"acq/1"]


def test_push_to_an_unreachable_redis_exits_1_with_the_reason() -> None:
    result = subprocess.run(
        [CLI, "push", "--redis-url", "redis://127.0.0.1:1/0", DONE, "acq/1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot push to {DONE!r}: ")


def test_a_watcher_that_dies_of_a_non_transient_error_is_restarted_and_routes_again(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    r.set(DONE, "not a list")  # WRONGTYPE: no reconnect cures it
    with routers(config=config, redis_url=redis_url, log=tmp_path / "router.log") as start:
        process = start(instance="a")
        wait_for(lambda: "watcher 'global/done' died" in process.output(), what="a death")
        r.delete(DONE)
        r.lpush(DONE, "acq/1")
        wait_for(lambda: r.lrange("log", 0, -1) == [b"log/1"], what="routing again")
        assert process.proc.poll() is None
        assert process.signal(signal.SIGTERM) == 0


def test_past_the_restart_limit_the_router_exits_1_with_the_reason(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    r.set(DONE, "not a list")
    with routers(config=config, redis_url=redis_url, log=tmp_path / "router.log") as start:
        process = start(instance="a", extra=("--restart-limit", "3"))
        assert process.wait(timeout_s=30) == 1
    log = process.output()
    assert log.count("watcher 'global/done' died") == 3
    assert "failed 3 times in a row; stopping the router" in log
    assert "error: router stopped: WRONGTYPE" in log

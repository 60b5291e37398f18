"""``router --processes N``: N full router instances under one supervisor.

Real subprocesses on the session's Redis: children are killed with SIGKILL, the
supervisor too; every task must still exist exactly once (also on the list without a
dedup set) and nothing may stay in a taken list.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import psutil
import pytest
import redis

from tests.helpers import wait_for
from tests.procs import CLI, DONE, TWO_TARGET_CONFIG, RouterProcess, free_port, routers

INSTANCES = f"{DONE}/taken/instances"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(TWO_TARGET_CONFIG))
    return path


def children(supervisor: RouterProcess, count: int) -> dict[str, psutil.Process]:
    """The supervisor's router processes by instance name, once ``count`` of them run."""

    def found() -> dict[str, psutil.Process]:
        named = {}
        for child in psutil.Process(supervisor.proc.pid).children():
            try:
                argv = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            # a child between fork and exec still shows the supervisor's command line
            if "--instance" in argv and "--processes" not in argv:
                named[argv[argv.index("--instance") + 1]] = child
        return named

    def counted() -> dict[str, psutil.Process] | None:
        named = found()
        return named if len(named) == count else None

    # the dict that had them all: a second look may catch a restart between fork and exec
    result: dict[str, psutil.Process] = wait_for(counted, what=f"{count} router processes")
    return result


def registered(r: redis.Redis, *names: str) -> bool:
    live = {m.decode() for m in r.zrange(INSTANCES, 0, -1)}
    return set(names) <= live


def assert_each_once(r: redis.Redis, events: int) -> None:
    wait_for(lambda: r.llen("log") >= events, timeout_s=60, what="every event routed")
    trt, log = r.lrange("trt", 0, -1), r.lrange("log", 0, -1)
    assert len(trt) == len(set(trt)) == events, "a deduplicated task is missing or doubled"
    assert len(log) == len(set(log)) == events, "a task without dedup set is missing or doubled"
    wait_for(lambda: not taken_lists(r), what="taken lists empty")


def taken_lists(r: redis.Redis) -> list[bytes]:
    return [k for k in r.scan_iter(f"{DONE}/taken*") if r.type(k) == b"list"]


def push(r: redis.Redis, start: int, stop: int, *, chunk: int = 100) -> None:
    for i in range(start, stop, chunk):
        r.lpush(DONE, *(f"acq/{n}" for n in range(i, min(stop, i + chunk))))


def test_two_processes_are_two_instances_that_route_every_event_once(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    with routers(config=config, redis_url=redis_url, log=tmp_path / "sup.log") as start:
        supervisor = start(instance="sup", extra=("--processes", "2"))
        procs = children(supervisor, 2)
        assert set(procs) == {"sup-0", "sup-1"}
        wait_for(lambda: registered(r, "sup-0", "sup-1"), what="both instances registered")
        push(r, 0, 5000)
        assert_each_once(r, 5000)
        stats = r.hgetall(f"{DONE}/stats")
        assert int(stats[b"events"]) == 5000
        assert supervisor.signal(signal.SIGTERM) == 0
    assert not any(p.is_running() and p.status() != "zombie" for p in procs.values())
    assert r.zcard(INSTANCES) == 0, "every instance left on its way out"


def test_a_killed_process_is_started_again_under_its_name_and_nothing_is_lost_or_doubled(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    events = 20_000
    producer = threading.Thread(target=push, args=(r, 0, events), kwargs={"chunk": 20})
    with routers(config=config, redis_url=redis_url, log=tmp_path / "sup.log") as start:
        supervisor = start(instance="k", extra=("--processes", "2"))
        children(supervisor, 2)
        producer.start()
        for kills in range(3):
            wait_for(
                lambda k=kills: supervisor.output().count("router k-1 started") == k + 1,
                what="k-1 routing",
            )
            wait_for(lambda: r.llen("log") > 0, what="routing under way")
            victim = children(supervisor, 2)["k-1"]
            victim.kill()
            victim.wait(10)
        producer.join(60)
        wait_for(lambda: supervisor.output().count("router k-1 started") == 4, what="k-1 back")
        assert_each_once(r, events)
        assert supervisor.signal(signal.SIGTERM) == 0
    assert supervisor.output().count("router process k-1") == 3


def test_killing_the_supervisor_stops_its_processes(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    with routers(config=config, redis_url=redis_url, log=tmp_path / "sup.log") as start:
        supervisor = start(instance="orphan", extra=("--processes", "2"))
        procs = children(supervisor, 2)
        wait_for(lambda: registered(r, "orphan-0", "orphan-1"), what="both registered")
        supervisor.kill()
        _, alive = psutil.wait_procs(list(procs.values()), timeout=20)
        assert not alive, "a router process outlived its supervisor"
    wait_for(lambda: r.zcard(INSTANCES) == 0, what="the orphans left in order")


def test_a_process_that_keeps_dying_stops_the_group_with_exit_1(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    with routers(config=config, redis_url=redis_url, log=tmp_path / "sup.log") as start:
        supervisor = start(instance="bad", extra=("--processes", "2", "--restart-limit", "2"))
        first = children(supervisor, 2)
        first["bad-0"].kill()
        wait_for(
            lambda: children(supervisor, 2)["bad-0"].pid != first["bad-0"].pid,
            what="bad-0 started again",
        )
        children(supervisor, 2)["bad-0"].kill()
        assert supervisor.wait(30) == 1
        _, alive = psutil.wait_procs([first["bad-1"]], timeout=10)
        assert not alive, "the healthy process was not stopped with the group"
    assert "died 2 times in a row" in supervisor.output()


def test_each_process_serves_metrics_on_its_own_port(
    redis_url: str, config: Path, tmp_path: Path
) -> None:
    port = two_free_ports()
    with routers(config=config, redis_url=redis_url, log=tmp_path / "sup.log") as start:
        supervisor = start(extra=("--processes", "2", "--metrics-port", str(port)))
        children(supervisor, 2)
        for p in (port, port + 1):
            wait_for(lambda p=p: _answers(p), what=f"metrics on port {p}")
            body = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5).read()
            assert b"resc_event_to_commit" in body


def two_free_ports() -> int:
    """A port ``P`` with ``P + 1`` free as well (process *i* serves on ``P + i``)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("value", ["0", "257", "many", "-1"])
def test_a_bad_process_count_is_refused_with_exit_2(
    redis_url: str, config: Path, value: str
) -> None:
    done = subprocess.run(
        [CLI, "router", str(config), "--redis-url", redis_url, "--processes", value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert (
        "--processes" in done.stderr and "neither a number from 1 to 256 nor 'auto'" in done.stderr
    )


def test_a_bad_config_exits_2_before_any_process_starts(redis_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"watchers": [{"input_queue": "in", "rules": [{"on": "(", "make": {}}]}]}')
    done = subprocess.run(
        [CLI, "router", str(bad), "--redis-url", redis_url, "--processes", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "bad.json" in done.stderr and "supervisor" not in done.stderr


def test_the_processes_get_the_supervisors_flags_as_flags() -> None:
    """A flag (``--trace``) reaches each child as itself when set, and not at all when
    not (``--trace False`` would be refused as an extra argument)."""
    from resc_dramatiq.cli.router_cmds import router
    from resc_dramatiq.cli.router_processes import _child_argv

    for args, traced in ((["cfg.json", "--trace"], True), (["cfg.json"], False)):
        ctx = router.make_context("router", [*args, "--processes", "2"])
        argv = _child_argv(ctx, instance="r-0", index=0)
        assert ("--trace" in argv) is traced
        assert "True" not in argv and "False" not in argv

"""``resc-dramatiq status``: each figure of ``--json`` against a Redis state built for it."""

from __future__ import annotations

import json
import os
import pty
import queue
import select
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import wait_for
from tests.procs import CLI, free_port, own_redis, url_of

CONFIG = {
    "namespace": "ns",
    "watchers": [
        {
            "input_queue": "in",
            "unmatched_queue": "in/unmatched",
            "rules": [
                {
                    "name": "copy",
                    "on": r"^acq/(?P<p>\d+)$",
                    "make": {"task": "t/${p}", "queue": "out/${p}", "set": "seen/${p}"},
                },
                {
                    "name": "act",
                    "on": r"^acq/(?P<p>\d+)$",
                    "make": {"task": "a/${p}", "actor": "work", "queue": "jobs"},
                },
            ],
        }
    ],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(CONFIG))
    return path


def status_json(config: Path, redis_url: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["status", str(config), "--redis-url", redis_url, "--json"])
    assert result.exit_code == 0, result.output
    [watcher] = json.loads(result.stdout)
    return dict(watcher)


def redis_now_s(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def build_state(r: redis.Redis) -> float:
    """A hand-made state: every figure below is known. Returns the Redis time."""
    now = redis_now_s(r)
    r.lpush("in", "acq/7", "acq/8", "acq/9")
    r.lpush("in/taken/alpha", "acq/5", "acq/6")
    r.lpush("in/taken/beta", "acq/4")
    r.lpush("in/taken", "acq/3")  # resc's own taken list
    r.zadd("in/taken/instances", {"alpha": now * 1000 + 5000, "beta": now * 1000 - 1000})
    r.zadd("in/taken/beats", {"alpha": now * 1000 - 1500, "beta": now * 1000 - 7000})
    r.lpush("in/dead", "x1", "x2")
    r.lpush("in/unmatched", "u1", "u2", "u3", "u4")
    fields = {"events": 40, "queued": 30, "deduplicated": 5, "unmatched": 4, "retried": 2}
    fields |= {"dead": 2, "copy|matched": 20, "copy|queued": 15, "copy|deduplicated": 5}
    fields |= {"act|matched": 20, "act|queued": 15, "copy|retried": 2, "copy|dead": 2}
    r.hset("in/stats", mapping=fields)
    r.lpush("out/1", "t/1")
    r.lpush("out/2", "t/2", "t/2b")
    r.rpush("ns:jobs", "m1", "m2", "m3")
    r.hset("ns:jobs.msgs", mapping={"m1": "{}", "m2": "{}", "m3": "{}"})
    r.rpush("ns:jobs.DQ", "d1")
    r.zadd("ns:jobs.XQ", {"x1": now, "x2": now, "x3": now})
    r.zadd("seen/1", {"t/1": now - 100, "t/1b": now - 30})
    r.zadd("seen/2", {"t/2": now - 5})
    return now


def test_status_json_gives_each_watcher_figure(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    build_state(r)
    s = status_json(config, redis_url)
    assert s["input"] == "in"
    assert s["depth"] == 3
    assert s["in_flight"] == 4  # alpha 2, beta 1, resc's own list 1
    assert s["dead_letter"] == 2
    assert s["unmatched_kept"] == 4
    assert s["counters"] == {
        "events": 40,
        "queued": 30,
        "deduplicated": 5,
        "unmatched": 4,
        "retried": 2,
        "dead": 2,
        "leaf": 0,
    }
    assert s["more_keys"] == {}
    assert s["redis"] == redis_url


def test_status_json_gives_each_router_instance_with_its_heartbeat_age(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    build_state(r)
    instances = {i["name"]: i for i in status_json(config, redis_url)["instances"]}
    assert instances["alpha"]["alive"] is True
    assert instances["alpha"]["in_flight"] == 2
    assert 1.5 <= instances["alpha"]["heartbeat_age_s"] < 3.0
    assert instances["beta"]["alive"] is False
    assert instances["beta"]["in_flight"] == 1
    assert 7.0 <= instances["beta"]["heartbeat_age_s"] < 8.5


def test_status_json_gives_each_rules_counters(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    build_state(r)
    rules = status_json(config, redis_url)["rules"]
    assert rules == [
        {"name": "copy", "matched": 20, "queued": 15, "deduplicated": 5, "retried": 2, "dead": 2},
        {"name": "act", "matched": 20, "queued": 15, "deduplicated": 0, "retried": 0, "dead": 0},
    ]


def test_status_json_gives_each_target_with_dramatiq_delayed_and_dead_lettered(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    build_state(r)
    targets = status_json(config, redis_url)["targets"]
    assert targets == [
        {
            "key": "out/1",
            "kind": "list",
            "depth": 1,
            "delayed": None,
            "dead_lettered": None,
            "problem": None,
        },
        {
            "key": "out/2",
            "kind": "list",
            "depth": 2,
            "delayed": None,
            "dead_lettered": None,
            "problem": None,
        },
        {
            "key": "jobs",
            "kind": "dramatiq",
            "depth": 3,
            "delayed": 1,
            "dead_lettered": 3,
            "problem": None,
        },
    ]


def test_status_json_gives_each_dedup_set_with_the_age_of_its_oldest_entry(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    build_state(r)
    sets = {d["key"]: d for d in status_json(config, redis_url)["sets"]}
    assert set(sets) == {"seen/1", "seen/2"}
    assert sets["seen/1"]["size"] == 2
    assert 100 <= sets["seen/1"]["oldest_age_s"] < 102
    assert sets["seen/2"]["size"] == 1
    assert 5 <= sets["seen/2"]["oldest_age_s"] < 7


def test_status_reports_what_a_real_router_did(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    r.lpush("in", "acq/1", "acq/2", "acq/1", "nothing/here")
    ruleset = RuleSet.compile(Config.from_data(CONFIG))
    Router(ruleset=ruleset, client=r, instance="live").run_until_idle()
    s = status_json(config, redis_url)
    assert (s["depth"], s["in_flight"], s["unmatched_kept"]) == (0, 0, 1)
    assert s["counters"]["events"] == 4
    assert s["counters"]["queued"] == 5
    assert s["counters"]["deduplicated"] == 1
    copy, act = s["rules"]
    assert (copy["matched"], copy["queued"], copy["deduplicated"]) == (3, 2, 1)
    assert (act["matched"], act["queued"]) == (3, 3)
    assert [i["name"] for i in s["instances"]] == ["live"]
    assert s["instances"][0]["alive"] is True
    assert {t["key"]: t["depth"] for t in s["targets"]} == {"out/1": 1, "out/2": 1, "jobs": 3}
    assert {d["key"]: d["size"] for d in s["sets"]} == {"seen/1": 1, "seen/2": 1}
    r.connection_pool.disconnect()


def test_the_table_names_every_watcher_rule_target_and_set(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    build_state(r)
    result = CliRunner().invoke(main, ["status", str(config), "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    for name in ("watcher in", "alpha", "copy", "act", "out/2", "jobs", "seen/1"):
        assert name in result.stdout


def test_an_unreachable_redis_exits_1_without_the_password(config: Path) -> None:
    url = f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(main, ["status", str(config), "--redis-url", url])
    assert result.exit_code == 1
    assert "unreachable" in result.stderr
    assert "s3cret-pw" not in result.output
    assert "Traceback" not in result.output


def test_watch_refreshes_until_interrupted_and_exits_0(redis_url: str, config: Path) -> None:
    # a terminal, as a person watching has: rich redraws the tables in place on one
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [CLI, "status", str(config), "--redis-url", redis_url, "--watch", "--interval", "0.2"],
        stdout=secondary,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(secondary)
    shown = bytearray()

    def refreshed_three_times() -> bool:
        while select.select([primary], [], [], 0)[0]:
            shown.extend(os.read(primary, 65536))
        return shown.count(b"watcher in") >= 3

    try:  # a few refreshes, however long the start takes on a busy machine
        wait_for(refreshed_three_times, timeout_s=60, what="three refreshes")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
        os.close(primary)
    assert process.returncode == 0, err
    assert b"Traceback" not in err


def test_a_bad_config_exits_2_with_its_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"watchers": [{"input_queue": "in", "rules": [{"on": "(", "make": {}}]}]}')
    result = CliRunner().invoke(main, ["status", str(path), "--redis-url", "redis://x:1/0"])
    assert result.exit_code == 2
    assert str(path) in result.stderr


def test_status_waits_for_nothing_when_redis_is_empty(redis_url: str, config: Path) -> None:
    s = wait_for(lambda: status_json(config, redis_url))
    assert s["depth"] == 0 and s["instances"] == [] and s["sets"] == []
    assert [t["depth"] for t in s["targets"]] == [0]  # the constant Dramatiq queue only


def test_a_template_naming_many_keys_shows_the_first_sorted_and_counts_the_rest(
    r: redis.Redis, redis_url: str, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("resc_dramatiq.ops.target_status.MAX_KEYS", 3)
    for p in (5, 1, 4, 2, 3):
        r.lpush(f"out/{p}", "t")
    s = status_json(config, redis_url)
    assert [t["key"] for t in s["targets"]] == ["out/1", "out/2", "out/3", "jobs"]
    assert s["more_keys"] == {"out/${p}": 2}


def test_a_templated_dramatiq_queue_lists_queues_not_their_companion_keys(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    data = json.loads(json.dumps(CONFIG))
    data["watchers"][0]["rules"][1]["make"]["queue"] = "jobs-${p}"
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    r.rpush("ns:jobs-1", "m1")
    r.hset("ns:jobs-1.msgs", "m1", "{}")
    r.rpush("ns:jobs-1.DQ", "d1", "d2")
    r.hset("ns:jobs-1.DQ.msgs", mapping={"d1": "{}", "d2": "{}"})
    r.zadd("ns:jobs-2.XQ", {"x": 1})
    r.hset("ns:jobs-2.XQ.msgs", "x", "{}")
    r.rpush("ns:jobs-2", "m2")
    targets = status_json(path, redis_url)["targets"]
    assert targets == [
        {
            "key": "jobs-1",
            "kind": "dramatiq",
            "depth": 1,
            "delayed": 2,
            "dead_lettered": 0,
            "problem": None,
        },
        {
            "key": "jobs-2",
            "kind": "dramatiq",
            "depth": 1,
            "delayed": 0,
            "dead_lettered": 1,
            "problem": None,
        },
    ]


def test_a_password_in_the_url_never_shows_in_tables_or_json(
    r: redis.Redis, redis_proc: Any, config: Path
) -> None:
    build_state(r)
    # The test server has no password: the default user takes any one.
    url = f"redis://default:s3cret-pw@{redis_proc.host}:{redis_proc.port}/0"
    runner = CliRunner()
    table = runner.invoke(main, ["status", str(config), "--redis-url", url], env={"COLUMNS": "200"})
    data = runner.invoke(main, ["status", str(config), "--redis-url", url, "--json"])
    assert table.exit_code == data.exit_code == 0, table.output + data.output
    masked = f"redis://default:***@{redis_proc.host}:{redis_proc.port}/0"
    assert masked in table.stdout
    assert json.loads(data.stdout)[0]["redis"] == masked
    assert "s3cret-pw" not in table.output + data.output


class Lines:
    """The lines a subprocess writes to one pipe, read by a thread, waited for with a bound."""

    def __init__(self, pipe: Any) -> None:
        self._lines: queue.Queue[bytes] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe: Any) -> None:
        with pipe:  # closed at end of file, by the only thread that reads it
            for line in iter(pipe.readline, b""):
                self._lines.put(line)

    def next(self, timeout_s: float = 10.0) -> bytes:
        return self._lines.get(timeout=timeout_s)


@pytest.fixture
def watching(config: Path) -> Iterator[Any]:
    """Start ``status --watch --json`` on a URL: (process, stdout lines, stderr lines).

    Killed at the end whatever happened.
    """
    started: list[tuple[subprocess.Popen[bytes], Lines, Lines]] = []

    def start(url: str) -> tuple[subprocess.Popen[bytes], Lines, Lines]:
        args = ["status", str(config), "--redis-url", url, "--watch", "--json"]
        process = subprocess.Popen(
            [CLI, *args, "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        started.append((process, Lines(process.stdout), Lines(process.stderr)))
        return started[-1]

    yield start
    for process, out, err in started:
        process.kill()
        process.wait(timeout=10)
        out.thread.join(timeout=10)
        err.thread.join(timeout=10)


def test_watch_json_prints_one_json_line_per_refresh_and_exits_0_on_ctrl_c(
    r: redis.Redis, redis_url: str, watching: Any
) -> None:
    process, out, _ = watching(redis_url)
    first = json.loads(out.next())
    r.lpush("in", "acq/1")
    later = json.loads(out.next())
    while later[0]["depth"] == 0:  # a refresh that began before the push
        later = json.loads(out.next())
    assert (first[0]["depth"], later[0]["depth"]) == (0, 1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_watch_rides_out_a_redis_outage(watching: Any) -> None:
    with own_redis() as server:
        process, out, err = watching(url_of(server))
        out.next()
        server.stop()
        assert b"unreachable" in err.next()
        server.start()
        assert json.loads(out.next())[0]["input"] == "in"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0

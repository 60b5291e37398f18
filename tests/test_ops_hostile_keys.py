"""``status`` and ``dead`` against a hostile keyspace: one odd key or one malformed dead
letter is reported on its own, never the whole command's failure."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from click.testing import CliRunner, Result

from resc_dramatiq.cli import main
from tests.dashboard_server import write_rules
from tests.helpers import dead_cli

#: A raw target and a Dramatiq target whose queues are only a variable.
DYNAMIC = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [
                {"name": "raw", "on": "^r/(?P<q>.+)$", "make": {"queue": "${q}"}},
                {"name": "job", "on": "^j/(?P<q>.+)$", "make": {"actor": "w", "queue": "${q}"}},
            ],
        }
    ]
}


def status(config: Path, redis_url: str, *extra: str) -> Result:
    argv = ["status", str(config), "--redis-url", redis_url, *extra]
    return CliRunner().invoke(main, argv, env={"COLUMNS": "200"})


def test_status_names_each_odd_key_and_shows_the_other_figures(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.zadd("out/x", {"a": 1})
    r.lpush("out/y", "t")
    r.set("todo", "x")
    r.set("dramatiq:jobs", "x")
    r.hset("in/stats", mapping={"events": "many", "queued": 4})
    result = status(write_rules(tmp_path), redis_url, "--json")
    assert result.exit_code == 0, result.output
    [watcher] = json.loads(result.stdout)
    targets = {t["key"]: t for t in watcher["targets"]}
    assert targets["out/x"]["problem"] == "out/x: holds a zset, not a list"
    assert (targets["out/y"]["depth"], targets["out/y"]["problem"]) == (1, None)
    assert targets["jobs"]["problem"] == "dramatiq:jobs: holds a string, not a list"
    assert watcher["sets"][0]["problem"] == "todo: holds a string, not a zset"
    assert watcher["counters"]["queued"] == 4
    assert "in/stats: counter 'events' is no integer: 'many'" in watcher["odd_keys"]


def test_status_tables_show_a_string_at_the_input_list_as_such(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.set("in", "x")
    result = status(write_rules(tmp_path), redis_url)
    assert result.exit_code == 0, result.output
    assert "in: holds a string, not a list" in result.stdout


def test_status_lists_a_queue_of_a_variable_alone_as_dynamic_and_survives_the_stats_hash(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.hset("in/stats", mapping={"events": 3})
    r.zadd("dramatiq:__heartbeats__", {"w1": 1})
    r.config_resetstat()
    result = status(write_rules(tmp_path, DYNAMIC), redis_url, "--json")
    assert result.exit_code == 0, result.output
    [watcher] = json.loads(result.stdout)
    assert (watcher["targets"], watcher["dynamic"], watcher["odd_keys"]) == ([], ["${q}"], [])
    assert watcher["counters"]["events"] == 3
    assert "cmdstat_scan" not in r.info("commandstats")


MALFORMED = (
    b'{"event":"x/1","attempts":"three"}',
    b'{"event":"x/2","at":1e400}',
    b'{"event":"x/3","event_hex":"zz"}',
)


def test_dead_list_reports_each_malformed_letter_and_lists_them_all(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.lpush("in/dead", *MALFORMED)
    listed = dead_cli(redis_url, write_rules(tmp_path), "list")
    assert listed.exit_code == 0, listed.output
    assert "in/dead: 3 dead letters, 3 shown" in listed.stdout
    assert listed.stdout.count("malformed entry:") == 3
    as_json = dead_cli(redis_url, write_rules(tmp_path), "list", "--json")
    letters = json.loads(as_json.stdout)[0]["letters"]
    assert [x["event"] for x in letters] == ["x/3", "x/2", "x/1"]
    assert letters[0]["problem"] == "event_hex is no hex: 'zz'"


def test_dead_requeue_all_requeues_malformed_letters_reporting_each(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.lpush("in/dead", *MALFORMED)
    result = dead_cli(redis_url, write_rules(tmp_path), "requeue", "--all")
    assert result.exit_code == 0, result.output
    assert "in/dead: 3 requeued" in result.stdout
    assert result.stderr.count("in/dead: malformed entry (") == 3
    assert r.lrange("in", 0, -1) == [b"x/3", b"x/2", b"x/1"]
    assert r.llen("in/dead") == 0

"""Lineage records: written by the commit only when a watcher says ``lineage``, bounded
in number and size, expiring; ``why`` on hostile input and odd keys (real server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.ops.why import WhyError, why
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.lineage import EVENT_LIMIT, MESSAGE_RECORD_LIMIT
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import wait_for

INPUT = "in"


def raw_rules(lineage: Any = None) -> RuleSet:
    """Each event ``e/<n>`` (any text after) makes the raw task ``t/<n>`` on list ``out``."""
    watcher: dict[str, Any] = {
        "input_queue": INPUT,
        "rules": [
            {"name": "raw", "on": r"^e/(?P<n>\d+)", "make": {"queue": "out", "task": "t/${n}"}}
        ],
    }
    if lineage is not None:
        watcher["lineage"] = lineage
    return RuleSet.compile(Config.from_data({"watchers": [watcher]}))


def run_cli(*argv: str) -> Result:
    return CliRunner().invoke(main, list(argv))


def route(r: redis.Redis, ruleset: RuleSet, *events: str) -> None:
    r.lpush(INPUT, *events)
    Router(ruleset=ruleset, client=r).run_until_idle()


def buckets(r: redis.Redis) -> list[bytes]:
    return sorted(r.scan_iter(f"{INPUT}/lineage/*"))


def record(r: redis.Redis, task: str) -> dict[str, Any] | None:
    for key in buckets(r):
        raw = r.hget(key, f"t:{task}")
        if raw is not None:
            return dict(json.loads(raw))
    return None


def test_raw_tasks_leave_no_record_when_lineage_is_off(r: redis.Redis) -> None:
    route(r, raw_rules(), "e/1")
    assert r.lrange("out", 0, -1) == [b"t/1"]
    assert buckets(r) == []


def test_a_raw_task_leaves_its_record_in_the_commit_that_queues_it(r: redis.Redis) -> None:
    route(r, raw_rules(True), "e/1")
    found = record(r, "t/1")
    assert found is not None
    assert found["task"] == "t/1" and found["queue"] == "out" and "message" not in found
    assert found["cause"] == {
        "root": None,
        "parent": None,
        "event": "e/1",
        "rule": "raw",
        "watcher": INPUT,
    }
    [bucket] = buckets(r)
    assert 86400 * 1000 < r.pttl(bucket) <= (86400 + 86400 / 8) * 1000  # a day and a span


def test_a_deduplicated_task_leaves_no_record(r: redis.Redis) -> None:
    ruleset = raw_rules(True)
    spec = ruleset.config.spec.model_dump(exclude_defaults=True)
    spec["watchers"][0]["rules"][0]["make"][0]["set"] = "todo"
    ruleset = RuleSet.compile(Config.from_data(spec))
    r.zadd("todo", {"t/1": 1})
    route(r, ruleset, "e/1", "e/2")
    assert record(r, "t/1") is None and record(r, "t/2") is not None


def test_records_expire_after_their_ttl(r: redis.Redis) -> None:
    route(r, raw_rules({"ttl_s": 1}), "e/1")
    assert record(r, "t/1") is not None
    [bucket] = buckets(r)
    assert 1000 < r.pttl(bucket) <= 1125
    wait_for(lambda: not buckets(r), timeout_s=5)


def test_records_are_bounded_in_number_and_size(r: redis.Redis) -> None:
    bounded = raw_rules({"max_records": 40})  # 5 per bucket (an eighth of the ttl)
    route(r, bounded, *[f"e/{n}" for n in range(20)])
    [bucket] = buckets(r)
    assert r.hlen(bucket) == 5
    route(r, bounded, "e/50")  # the bucket is full: no more records until the next one
    assert r.hlen(bucket) == 5 and record(r, "t/50") is None
    route(r, raw_rules(True), "e/99" + "x" * 10_000)
    found = record(r, "t/99")
    assert found is not None and len(found["cause"]["event"]) == EVENT_LIMIT
    assert found["cause"]["event"].endswith("…")


def test_a_config_refuses_a_lineage_setting_out_of_bounds() -> None:
    for bad in ({"ttl_s": 0}, {"ttl_s": 31 * 86400}, {"max_records": 0}, {"size": 1}):
        with pytest.raises(Exception, match="lineage"):
            raw_rules(bad)


def test_why_names_a_raw_task_and_its_root_event(r: redis.Redis) -> None:
    ruleset = raw_rules(True)
    route(r, ruleset, "e/3")
    chain = why(r, [w.spec for w in ruleset.watchers], "dramatiq", "t/3")
    assert chain is not None
    assert [(s.kind, s.name, s.status) for s in chain.steps] == [
        ("task", "t/3", "queued"),
        ("event", "e/3", "root"),
    ]
    r.rpop("out")
    chain = why(r, [w.spec for w in ruleset.watchers], "dramatiq", "t/3")
    assert chain is not None and chain.steps[0].status == "taken"


@pytest.mark.parametrize("asked", ["", "x" * 5000])
def test_why_refuses_an_empty_or_huge_question(r: redis.Redis, asked: str) -> None:
    with pytest.raises(WhyError, match="1 to 4096"):
        why(r, [w.spec for w in raw_rules(True).watchers], "dramatiq", asked)


def test_why_reads_keys_of_other_types_and_broken_records_as_absent(r: redis.Redis) -> None:
    ruleset = raw_rules(True)
    specs = [w.spec for w in ruleset.watchers]
    route(r, ruleset, "e/0")
    [bucket] = buckets(r)
    r.delete(bucket)
    r.set(bucket, "not a hash")
    assert why(r, specs, "dramatiq", "t/0") is None
    r.delete(bucket)
    r.hset(bucket, mapping={"t:a": "{not json", "t:b": "[1, 2]", "m:x y": "{}"})
    for asked in ("a", "b", "x y", "../../etc", "\x00\xff"):
        assert why(r, specs, "dramatiq", asked) is None
    # a record whose queue holds another type: the step's status is unknown, the key named
    r.hset(bucket, "t:c", json.dumps({"task": "c", "queue": "odd", "cause": []}))
    r.hset("odd", "a", "b")
    chain = why(r, specs, "dramatiq", "c")
    assert chain is not None and chain.steps[0].status == "taken"
    assert any("odd" in o for o in chain.odd)


def test_the_why_command_exits_1_for_an_unknown_task_and_2_for_an_empty_one(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "raw.json"
    config.write_text(json.dumps(raw_rules(True).config.spec.model_dump(exclude_defaults=True)))
    route(r, raw_rules(True), "e/4")
    found = run_cli("why", str(config), "t/4", "--redis-url", redis_url)
    assert found.exit_code == 0, found.output
    assert "task 't/4': queued" in found.output and "event 'e/4'" in found.output
    as_json = run_cli("why", str(config), "t/4", "--redis-url", redis_url, "--json")
    assert json.loads(as_json.output)["steps"][0]["name"] == "t/4"
    missing = run_cli("why", str(config), "t/none", "--redis-url", redis_url)
    assert missing.exit_code == 1 and "no lineage record of 't/none'" in missing.output
    empty = run_cli("why", str(config), "", "--redis-url", redis_url)
    assert empty.exit_code == 2


def test_a_schedules_actor_tick_and_a_joins_expired_make_carry_their_cause() -> None:
    from resc_dramatiq.rules.lineage import CAUSE_OPTION
    from resc_dramatiq.rules.plan import Planner
    from resc_dramatiq.rules.schedules import compile_schedules

    config = Config.from_data(
        {
            "watchers": [
                {
                    "input_queue": INPUT,
                    "rules": [
                        {
                            "name": "pack",
                            "on": r"^(?P<s>cut|weigh)/(?P<r>\d+)$",
                            "join": {
                                "group": "roll/${r}",
                                "member": "${s}",
                                "expect": ["cut", "weigh"],
                                "deadline_s": 60,
                                "expired": {"actor": "late", "task": "late/${r}"},
                            },
                            "make": {"actor": "pack", "task": "pack/${r}"},
                        }
                    ],
                }
            ],
            "schedules": [{"name": "tick", "every_s": 5, "actor": "beat", "queue": "q"}],
        }
    )
    [schedule] = compile_schedules(config)
    firing = schedule.firing(1000, now_ms=1_000_000)
    cause = json.loads(firing.payload)["options"][CAUSE_OPTION]
    assert cause["parent"] is None and cause["rule"] == "schedule tick"
    assert cause["event"] == schedule.render(1000) and cause["watcher"] == INPUT
    [expired] = Planner(RuleSet.compile(config).watchers[0]).expired("pack", b"cut/7", "roll/7", 0)
    assert expired.message is not None
    cause = json.loads(expired.message.payload)["options"][CAUSE_OPTION]
    assert cause["event"] == "cut/7" and cause["rule"] == "pack" and cause["parent"] is None
    assert cause["root"] == expired.message.message_id  # from no message: its own root


def actor_rules(note: str = "") -> RuleSet:
    """Each event ``e/<n>`` makes a Dramatiq message ``t/<n>`` for actor ``work``."""
    make = {"actor": "work", "task": "t/${n}", "kwargs": {"note": note}}
    watcher = {
        "input_queue": INPUT,
        "lineage": True,
        "rules": [{"name": "msg", "on": r"^e/(?P<n>\d+)$", "make": make}],
    }
    return RuleSet.compile(Config.from_data({"watchers": [watcher]}))


def message_of(r: redis.Redis) -> dict[str, Any]:
    [payload] = r.hvals("dramatiq:default.msgs")
    return dict(json.loads(payload))


def test_a_message_is_kept_as_its_own_record_and_read_back_as_one(r: redis.Redis) -> None:
    ruleset = actor_rules()
    route(r, ruleset, "e/7")
    message = message_of(r)
    [bucket] = buckets(r)
    assert json.loads(r.hget(bucket, "t:t/7") or b"") == {"see": message["message_id"]}
    assert json.loads(r.hget(bucket, "m:" + message["message_id"]) or b"") == message
    chain = why(r, [w.spec for w in ruleset.watchers], "dramatiq", "t/7")
    assert chain is not None
    [step, root] = chain.steps
    assert (step.kind, step.name, step.status) == ("message", message["message_id"], "queued")
    assert (step.task, step.queue, step.actor, step.rule, step.watcher, step.event) == (
        "t/7", "default", "work", "msg", INPUT, "e/7"
    )  # fmt: skip
    assert step.root == message["message_id"] and step.at_ms == message["message_timestamp"]
    assert (root.kind, root.name) == ("event", "e/7")


def test_a_message_past_the_limit_gets_a_record_of_its_own(r: redis.Redis) -> None:
    route(r, actor_rules(note="x" * MESSAGE_RECORD_LIMIT), "e/8")
    message = message_of(r)
    [bucket] = buckets(r)
    kept = json.loads(r.hget(bucket, "m:" + message["message_id"]) or b"")
    assert kept["task"] == "t/8" and kept["actor"] == "work" and "options" not in kept
    assert kept["cause"]["event"] == "e/8" and len(json.dumps(kept)) < 1000


def test_without_records_causes_are_read_and_nothing_is_kept(r: redis.Redis) -> None:
    watcher = {
        "input_queue": INPUT,
        "lineage": {"records": False},
        "rules": [
            {"name": "msg", "on": r"^e/(?P<n>\d+)$", "make": {"actor": "work", "task": "t/${n}"}}
        ],
    }
    ruleset = RuleSet.compile(Config.from_data({"watchers": [watcher]}))
    envelope = {"resc": 1, "event": "e/5", "data": {}, "cause": {"message": "m-1", "root": "r-0"}}
    route(r, ruleset, json.dumps(envelope))
    cause = message_of(r)["options"]["resc_cause"]
    assert (cause["parent"], cause["root"], cause["event"]) == ("m-1", "r-0", "e/5")
    assert buckets(r) == []
    assert why(r, [w.spec for w in ruleset.watchers], "dramatiq", "t/5") is None

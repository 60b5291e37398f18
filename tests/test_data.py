"""Data between stages: an event's payload, in its envelope, through rules and workers.

Pure tests of the envelope and the planner, then the router on a real server (rules
reading ``${data.<field>}``, actors receiving payload fields), a worker in Node pushing
envelopes, and real Dramatiq workers whose ``done_data`` feeds the next stage, through
the router and routed in the worker.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from click.testing import CliRunner
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from pytest_redis.executor import RedisExecutor

from resc_dramatiq import Completion, Config, ConfigError, Registry, Router, RuleSet, build_ruleset
from resc_dramatiq.cli import main
from resc_dramatiq.rules import data
from resc_dramatiq.rules.lineage import DoneCause
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.worker.app import App
from tests.helpers import running, wait_for

NODE_WORKER = Path(__file__).parent / "workers" / "node_worker.js"


def watcher(*rules: dict[str, Any], accepts: bool = True, queue: str = "done") -> Config:
    return Config.from_data(
        {"watchers": [{"input_queue": queue, "data": accepts, "rules": list(rules)}]}
    )


def route(r: redis.Redis, cfg: Config, *events: bytes | str, queue: str = "done") -> None:
    for event in events:
        r.lpush(queue, event)
    Router(ruleset=RuleSet.compile(cfg), client=r).run_until_idle()  # type: ignore[arg-type]


THUMB = {
    "name": "thumbnail",
    "on": r"^transcode/(?P<video>\d+)$",
    "make": {"task": "thumb/${video} from ${data.path}", "queue": "thumbs"},
}


def test_an_envelope_is_an_event_with_its_payload_and_only_that() -> None:
    element = data.envelope("transcode/7", {"path": "/v/7.mp4", "size": 12, "hd": True})
    assert json.loads(element) == {
        "resc": 1,
        "event": "transcode/7",
        "data": {"path": "/v/7.mp4", "size": 12, "hd": True},
    }
    assert data.parse(element) == ("transcode/7", {"path": "/v/7.mp4", "size": 12, "hd": True})
    for plain in (
        b"transcode/7",
        b'{"event": "x", "data": {}}',
        b'{"resc": 2, "event": "x", "data": {}}',
        b"{not json",
    ):
        assert data.parse(plain) is None
    assert data.variables(
        {"path": "p", "size": 12, "hd": True, "deep": {"a": 1}, "none": None}
    ) == {
        "data.path": "p",
        "data.size": "12",
        "data.hd": "true",
    }


def test_a_payload_that_is_no_json_object_or_too_big_is_refused() -> None:
    with pytest.raises(data.NotJSON, match="a payload is a JSON object"):
        data.envelope("e", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(data.NotJSON, match="the payload is not JSON"):
        data.envelope("e", {"when": object()})
    with pytest.raises(data.NotJSON, match="over the limit of 100"):
        data.envelope("e", {"blob": "x" * 200}, limit=100)


def test_a_watcher_reads_envelopes_only_when_its_config_says_so() -> None:
    element = data.envelope("transcode/7", {"path": "/v/7.mp4"})
    plain = Planner(
        RuleSet.compile(
            watcher({**THUMB, "make": {"task": "t/${video}", "queue": "q"}}, accepts=False)
        ).watchers[0]
    )
    assert plain.plan([element]).unmatched == [element]  # JSON text, matched as it is
    reading = Planner(RuleSet.compile(watcher(THUMB)).watchers[0])
    [task] = reading.plan([element]).tasks
    assert task.task == b"thumb/7 from /v/7.mp4"


def test_an_event_the_worker_read_already_plans_as_its_envelope_does() -> None:
    """A worker routing its own done event hands the planner the text and payload it
    has (``read``): the same tasks and cause as from parsing the envelope."""
    cause = DoneCause(message="m-1", root="root-1")
    element = data.with_cause(data.envelope("transcode/7", {"path": "/v/7.mp4"}), cause)
    planner = Planner(RuleSet.compile(watcher(THUMB)).watchers[0])
    parsed = planner.plan([element], envelopes=True, cause=cause, now=1.0)
    read = planner.plan(
        [element], envelopes=True, cause=cause, now=1.0,
        read=("transcode/7", {"path": "/v/7.mp4"}),
    )  # fmt: skip
    assert (
        [t.task for t in read.tasks] == [t.task for t in parsed.tasks] == [b"thumb/7 from /v/7.mp4"]
    )
    assert read.events == parsed.events == [element]
    assert read.traces == parsed.traces


def test_a_payload_field_in_a_watcher_without_envelopes_is_refused_at_load() -> None:
    with pytest.raises(
        ConfigError,
        match=r"\$\{data.path\} is a payload field, but this watcher reads no envelopes",
    ):
        RuleSet.compile(watcher(THUMB, accepts=False))


def test_rules_use_the_payload_and_an_actor_gets_the_fields_its_make_names(
    r: redis.Redis,
) -> None:
    to_actor = {
        "name": "to actor",
        "on": r"^transcode/(?P<video>\d+)$",
        "make": [
            {
                "actor": "thumbnail",
                "queue": "thumbs",
                "task": "thumb/${video}",
                "data": ["path", "size"],
            },
            {"actor": "archive", "queue": "archive", "task": "arch/${video}", "data": "payload"},
        ],
    }
    route(
        r,
        watcher(THUMB, to_actor),
        data.envelope("transcode/7", {"path": "/v/7.mp4", "size": 12, "video": "x"}),
    )
    assert r.lrange("thumbs", 0, -1) == [b"thumb/7 from /v/7.mp4"]
    messages = [json.loads(m) for m in r.hvals("dramatiq:thumbs.msgs")]
    assert [m["kwargs"] for m in messages] == [
        {"path": "/v/7.mp4", "size": 12, "video": "7"}
    ]  # rule wins
    [archived] = [json.loads(m) for m in r.hvals("dramatiq:archive.msgs")]
    assert archived["kwargs"] == {
        "payload": {"path": "/v/7.mp4", "size": 12, "video": "x"},
        "video": "7",
    }


def test_an_event_without_the_payload_field_a_rule_uses_is_dead_lettered_with_why(
    r: redis.Redis,
) -> None:
    route(r, watcher(THUMB), data.envelope("transcode/8", {"size": 1}), b"transcode/9")
    dead = [json.loads(e) for e in r.lrange("done/dead", 0, -1)]
    assert sorted(d["error"] for d in dead) == [
        "RuleError: variable 'data.path' has no value for this event",
        "RuleError: variable 'data.path' has no value for this event",
    ]
    assert r.llen("thumbs") == 0


def test_a_worker_in_node_pushes_envelopes_and_a_rule_uses_their_data(
    redis_proc: RedisExecutor, r: redis.Redis
) -> None:
    measured = {
        "name": "report",
        "on": r"^clip/(?P<n>\d+)$",
        "make": {"task": "report/${n} ${data.path} by ${data.worker}", "queue": "reports"},
    }
    r.lpush("clips", "clip/1", "clip/2")
    node = subprocess.run(
        ["node", str(NODE_WORKER), redis_proc.host, str(redis_proc.port), "clips", "done", "2"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert node.returncode == 0, node.stderr
    route(r, watcher(measured))
    assert sorted(r.lrange("reports", 0, -1)) == [
        b"report/1 /out/clip/1.json by node",
        b"report/2 /out/clip/2.json by node",
    ]


# A three-stage video pipeline: each stage's return value reaches the next one.
PIPELINE = [
    {
        "name": "thumbnail",
        "on": r"^transcode/(?P<video>\d+)$",
        "make": {"actor": "thumbnail", "task": "thumb/${video}", "data": ["path"]},
    },
    {
        "name": "publish",
        "on": r"^thumb/(?P<video>\d+)$",
        "make": {"actor": "publish", "task": "pub/${video}", "data": ["path", "thumb"]},
    },
]


def declare(broker: RedisBroker, r: redis.Redis) -> Any:
    @dramatiq.actor(broker=broker, done_event="transcode/${video}", done_data="result")
    def transcode(video: int) -> dict[str, Any]:
        return {"path": f"/videos/{video}.mp4"}

    @dramatiq.actor(broker=broker, done_data=lambda result, message: {**result, "by": "t"})
    def thumbnail(video: str, path: str) -> dict[str, Any]:
        return {"path": path, "thumb": f"{path}.jpg"}

    @dramatiq.actor(broker=broker, done_event=False)
    def publish(video: str, path: str, thumb: str) -> None:
        r.hset("published", video, f"{path} {thumb}")

    return transcode


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    b = RedisBroker(url=redis_url)
    yield b
    b.client.connection_pool.disconnect()


@pytest.mark.parametrize("inline", [True, False], ids=["in the worker", "through the router"])
def test_each_stage_gets_what_the_previous_one_returned(
    broker: RedisBroker, r: redis.Redis, inline: bool
) -> None:
    cfg = watcher(*PIPELINE, queue="global/done")
    ruleset = RuleSet.compile(cfg)
    broker.add_middleware(Completion(rules=ruleset) if inline else Completion(), before=Retries)
    transcode = declare(broker, r)
    for video in (1, 2):
        transcode.send(video)
    with running(broker):
        for _ in range(3):  # the stages, each routed by the router in between
            if not inline:
                wait_for(lambda: r.llen("global/done") > 0 or r.hlen("published") == 2)
                Router(ruleset=ruleset, client=r).run_until_idle()  # type: ignore[arg-type]
        wait_for(lambda: r.hlen("published") == 2)
    assert r.hgetall("published") == {
        b"1": b"/videos/1.mp4 /videos/1.mp4.jpg",
        b"2": b"/videos/2.mp4 /videos/2.mp4.jpg",
    }


def test_a_result_that_cannot_be_sent_fails_the_message_clearly(
    broker: RedisBroker, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    broker.add_middleware(Completion(data_limit=64), before=Retries)

    @dramatiq.actor(broker=broker, max_retries=0, done_event="big/${n}", done_data="result")
    def big(n: int) -> Any:
        return {"blob": "x" * 100} if n == 1 else {"when": object()}

    caplog.set_level(logging.ERROR)
    message_ids = [big.send(n).message_id for n in (1, 2)]
    with running(broker):
        wait_for(lambda: r.llen("global/done/failed") == 2)
        broker.join(big.queue_name)
    assert sorted(r.lrange("global/done/failed", 0, -1)) == [b"big/1", b"big/2"]
    assert r.llen("global/done") == 0  # never a done event without its data
    errors = [rec.getMessage() for rec in caplog.records if "done_data" in rec.getMessage()]
    assert any(
        f"actor 'big', message {message_ids[0]}" in e and "over the limit of 64" in e
        for e in errors
    )
    assert any(f"message {message_ids[1]}" in e and "is not JSON" in e for e in errors)
    assert r.zcard(f"dramatiq:{big.queue_name}.XQ") == 2  # failed, as Dramatiq failures are


def test_done_data_must_be_result_or_a_callable(broker: RedisBroker) -> None:
    broker.add_middleware(Completion(), before=Retries)
    with pytest.raises(ConfigError, match="done_data is 'result'"):

        @dramatiq.actor(broker=broker, done_data="return")
        def wrong() -> None: ...


#: The registry of this module's code rules (the worker finds it in their module).
REG = Registry()


def test_a_code_rule_gets_payload_fields_and_the_apps_lists_read_envelopes(
    broker: RedisBroker, r: redis.Redis
) -> None:
    broker.add_middleware(Completion(), before=Retries)

    @dramatiq.actor(broker=broker, done_event="transcode/${video}", done_data="result")
    def transcode(video: int) -> dict[str, Any]:
        return {"path": f"/videos/{video}.mp4", "seconds": 61}

    @REG.on_done(r"^transcode/(?P<video>\d+)$", data=("path", "seconds"))
    @dramatiq.actor(broker=broker, done_event=False)
    def thumbnail(video: str, path: str, seconds: int) -> None:
        r.hset("thumbs", video, f"{path} {seconds + 1}")

    try:
        ruleset = build_ruleset(None, App.of_broker(broker))
        assert [w.spec.data for w in ruleset.watchers] == [True]  # done_data writes there
        transcode.send(3)
        with running(broker):
            wait_for(lambda: r.llen("global/done") == 1)
            Router(ruleset=ruleset, client=r).run_until_idle()  # type: ignore[arg-type]
            wait_for(lambda: r.hget("thumbs", "3"))
        assert r.hget("thumbs", "3") == b"/videos/3.mp4 62"  # a JSON number stays one
    finally:
        REG.clear()


def test_a_payload_field_that_is_no_parameter_is_refused_where_it_is_written() -> None:
    with pytest.raises(ConfigError, match=r"payload field\(s\) size are no parameter"):

        @REG.on_done(r"^t/(?P<video>\d+)$", data=("size",))
        def thumbnail(video: str) -> None: ...

    REG.clear()


def pack_join(**make: Any) -> dict[str, Any]:
    return {
        "name": "pack",
        "on": r"^(?P<stage>cut|weigh|inspect)/(?P<roll>\d+)$",
        "join": {
            "group": "roll/${roll}",
            "member": "${stage}",
            "expect": ["cut", "weigh", "inspect"],
        },
        "make": {"actor": "pack", "queue": "pack", "task": "pack/${roll}", "members": "stages"}
        | make,
    }


def packed(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(m)["kwargs"] for m in r.hvals("dramatiq:pack.msgs")]


def test_a_joins_make_receives_every_members_payload(r: redis.Redis) -> None:
    cfg = watcher(pack_join())
    route(r, cfg, data.envelope("cut/7", {"length": 3.5}), b"weigh/7")
    route(
        r,
        cfg,
        data.envelope("inspect/7", {"ok": True, "notes": ["edge"]}),
        data.envelope("cut/7", {"length": 9}),
    )
    assert packed(r) == [
        {
            "stages": {
                "cut": {"length": 3.5},
                "weigh": None,
                "inspect": {"ok": True, "notes": ["edge"]},
            },
            "stage": "inspect",
            "roll": "7",
        }
    ]


def test_a_groups_kept_payloads_are_bounded_and_the_rest_are_null(r: redis.Redis) -> None:
    big = "x" * 40_000  # two of them pass the group's 64 KiB
    route(
        r,
        watcher(pack_join()),
        *(data.envelope(f"{s}/1", {"blob": big}) for s in ("cut", "weigh", "inspect")),
    )
    [kwargs] = packed(r)
    assert kwargs["stages"] == {"cut": {"blob": big}, "weigh": None, "inspect": None}


def test_only_a_joins_make_receives_members() -> None:
    rule = {"name": "r", "on": "^x$", "make": {"actor": "a", "queue": "q", "members": "m"}}
    with pytest.raises(ConfigError, match="only a join's make receives its members' payloads"):
        RuleSet.compile(watcher(rule))


def test_in_the_worker_a_join_gets_what_each_member_returned(
    broker: RedisBroker, r: redis.Redis
) -> None:
    ruleset = RuleSet.compile(watcher(pack_join(queue="default"), queue="global/done"))
    broker.add_middleware(Completion(rules=ruleset), before=Retries)
    stages = {}
    for stage in ("cut", "weigh", "inspect"):

        def run(roll: int, stage: str = stage) -> dict[str, Any]:
            return {"by": stage, "roll": roll}

        stages[stage] = dramatiq.actor(
            run,
            broker=broker,
            actor_name=stage,
            done_event=f"{stage}/${{roll}}",
            done_data="result",
        )

    @dramatiq.actor(broker=broker, done_event=False)
    def pack(roll: str, stage: str, stages: dict[str, Any]) -> None:
        r.hset("packs", roll, json.dumps(stages, sort_keys=True))

    for stage in stages.values():
        stage.send(4)
    with running(broker):
        wait_for(lambda: r.hget("packs", "4"))
    assert json.loads(r.hget("packs", "4") or b"") == {
        s: {"by": s, "roll": 4} for s in ("cut", "inspect", "weigh")
    }


def test_explain_shows_what_an_event_with_its_payload_makes(tmp_path: Path) -> None:
    config = tmp_path / "videos.json"
    config.write_text(
        json.dumps({"watchers": [{"input_queue": "done", "data": True, "rules": [THUMB]}]})
    )
    shown = CliRunner().invoke(
        main, ["explain", str(config), "transcode/42", "--data", '{"path": "/v/42.mp4"}']
    )
    assert shown.exit_code == 0, shown.output
    assert "data.path = '/v/42.mp4'" in shown.output
    assert "-> task 'thumb/42 from /v/42.mp4' to list 'thumbs'" in shown.output
    missing = CliRunner().invoke(main, ["explain", str(config), "transcode/42"])
    assert "variable 'data.path' has no value for this event" in missing.output
    wrong = CliRunner().invoke(main, ["explain", str(config), "transcode/42", "--data", "[1]"])
    assert wrong.exit_code == 2 and "--data is a JSON object ({...}), not list" in wrong.output
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    nested = CliRunner().invoke(main, ["explain", str(config), "transcode/42", "--data", deep])
    assert nested.exit_code == 2 and "--data is not JSON this package reads: nested too deeply" in (
        nested.output
    )


def test_check_says_which_watchers_read_envelopes(tmp_path: Path) -> None:
    config = tmp_path / "videos.json"
    config.write_text(
        json.dumps({"watchers": [{"input_queue": "done", "data": True, "rules": [THUMB]}]})
    )
    shown = CliRunner().invoke(main, ["check", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "watcher 'done' (taken 'done/taken', dead 'done/dead', reads envelopes)" in shown.output


def test_check_warns_where_a_rules_own_argument_hides_a_payload_field(tmp_path: Path) -> None:
    hiding = {
        "name": "hiding",
        "on": r"^transcode/(?P<video>\d+)$",
        "make": {
            "actor": "thumbnail",
            "queue": "q",
            "task": "t/${video}",
            "data": ["video", "path"],
        },
    }
    config = tmp_path / "videos.json"
    config.write_text(
        json.dumps({"watchers": [{"input_queue": "done", "data": True, "rules": [hiding]}]})
    )
    shown = CliRunner().invoke(main, ["check", str(config)])
    assert shown.exit_code == 0, shown.output
    assert (
        "warning: rule 'hiding' make[0]: the payload field 'video' is hidden by the rule's own "
        "argument 'video' (the rule's wins)"
    ) in shown.output
    assert "'path' is hidden" not in shown.output


def test_a_hostile_envelope_nested_past_the_parsers_depth_stays_one_plain_event(
    r: redis.Redis,
) -> None:
    deep = b'{"resc":1,"event":"transcode/1","data":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    route(r, watcher(THUMB), deep, data.envelope("transcode/2", {"path": "/v/2.mp4"}))
    assert r.lrange("thumbs", 0, -1) == [b"thumb/2 from /v/2.mp4"]  # the batch went on
    assert r.hget("done/stats", "unmatched") == b"1"  # the hostile one: a plain event

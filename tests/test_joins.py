"""Joins through the router on a real server: a group's make fires once, when complete.

Every test drives the production loop (``Router.run_until_idle``) over a real Redis; the
crash and worker proofs are in ``test_joins_crash.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from resc_dramatiq import Router, RouterOptions
from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import ConfigError
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.store.joins import Deadlines, JoinKeys
from resc_dramatiq.store.keys import DramatiqKeys
from resc_dramatiq.store.scripts import Scripts
from resc_dramatiq.store.slots import cluster_problems

STAGES = r"^(?P<stage>cut|weigh|inspect)/(?P<roll>\d+)$"


def config(*rules: dict[str, Any], failed: list[dict[str, Any]] | None = None) -> Config:
    watchers: list[dict[str, Any]] = [{"input_queue": "done", "rules": list(rules)}]
    if failed is not None:
        watchers.append({"input_queue": "done/failed", "rules": failed})
    return Config.from_data({"watchers": watchers})


def pack_rule(**join: Any) -> dict[str, Any]:
    spec = {"group": "roll/${roll}", "member": "${stage}", "expect": ["cut", "weigh", "inspect"]}
    return {
        "name": "pack",
        "on": STAGES,
        "join": spec | join,
        "make": {"task": "pack/${roll} of ${join.size} in ${join.group}", "queue": "pack"},
    }


def route(r: redis.Redis, cfg: Config, *events: str, queue: str = "done") -> Router:
    for event in events:
        r.lpush(queue, event)
    router = Router(ruleset=RuleSet.compile(cfg), client=r, options=RouterOptions())  # type: ignore[arg-type]
    router.run_until_idle()
    return router


def stats(r: redis.Redis, watcher: str = "done") -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(f"{watcher}/stats").items()}


def test_a_join_fires_once_when_every_listed_member_is_in(r: redis.Redis) -> None:
    cfg = config(pack_rule())
    route(r, cfg, "cut/7", "weigh/7", "cut/7")
    assert r.llen("pack") == 0  # inspect is missing
    route(r, cfg, "inspect/7", "weigh/7", "inspect/7")
    assert r.lrange("pack", 0, -1) == [b"pack/7 of 3 in roll/7"]
    s = stats(r)
    assert s["pack|completed"] == 1
    assert s["pack|late"] == 2  # the repeats after completion found the tombstone
    route(r, cfg, "cut/7", "weigh/7", "inspect/7")  # a whole redelivery: nothing
    assert r.llen("pack") == 1
    assert r.hgetall(JoinKeys.of("done").group("roll/7"))[b"state"] == b"done"


def test_members_in_one_batch_complete_the_group_once(r: redis.Redis) -> None:
    route(r, config(pack_rule()), "cut/1", "weigh/1", "inspect/1", "inspect/1", "cut/2")
    assert r.lrange("pack", 0, -1) == [b"pack/1 of 3 in roll/1"]
    group = r.hgetall(JoinKeys.of("done").group("roll/2"))
    assert group[b"state"] == b"open" and group[b"seen"] == b"1"


def test_a_count_or_a_count_template_as_expectation(r: redis.Redis) -> None:
    counted = {
        "name": "count",
        "on": r"^part/(?P<n>\d+)/(?P<of>\d+)/(?P<batch>\w+)$",
        "join": {"group": "b/${batch}", "expect": "${of}"},
        "make": {"task": "whole/${batch}/${join.size}", "queue": "whole"},
    }
    cfg = config(counted)
    route(r, cfg, "part/1/3/a", "part/2/3/a", "part/1/3/a", "part/1/2/b")
    assert r.llen("whole") == 0
    route(r, cfg, "part/3/3/a", "part/2/2/b")
    assert sorted(r.lrange("whole", 0, -1)) == [b"whole/a/3", b"whole/b/2"]


def test_an_event_whose_count_is_no_number_is_dead_lettered_with_its_reason(
    r: redis.Redis,
) -> None:
    rule = {
        "name": "count",
        "on": r"^part/(?P<of>\w+)$",
        "join": {"group": "g", "expect": "${of}"},
        "make": {"task": "whole", "queue": "whole"},
    }
    route(r, config(rule), "part/many", "part/0")
    dead = [json.loads(e) for e in r.lrange("done/dead", 0, -1)]
    errors = sorted(d["error"] for d in dead)
    assert "gave 'many', not a count of members from 1 to 100000" in errors[1]
    assert "gave '0'" in errors[0]
    assert r.exists(JoinKeys.of("done").group("g")) == 0


def test_a_failed_member_fires_the_failure_make_once_and_the_join_never(
    r: redis.Redis,
) -> None:
    failing = {
        "name": "a stage failed",
        "on": STAGES,
        "join": {"group": "roll/${roll}", "fail": True},
        "make": {"task": "scrap/${roll} (${join.group})", "queue": "scrap"},
    }
    cfg = config(pack_rule(), failed=[failing])
    route(r, cfg, "cut/5", "weigh/5")
    route(r, cfg, "inspect/5", "inspect/5", queue="done/failed")
    route(r, cfg, "inspect/5", "cut/5")  # a retry that succeeded after all: too late
    assert r.lrange("scrap", 0, -1) == [b"scrap/5 (roll/5)"]
    assert r.llen("pack") == 0
    assert stats(r, "done/failed")["a stage failed|failed"] == 1
    assert stats(r)["pack|late"] == 2
    assert r.hget(JoinKeys.of("done").counts, "pack") is None  # no open group left


def test_a_fan_out_group_completes_exactly_when_its_recorded_tasks_are_done(
    r: redis.Redis,
) -> None:
    split = {
        "name": "split",
        "on": r"^order/(?P<id>\d+)$",
        "make": [
            {"task": f"line/${{id}}/{i}", "queue": "lines", "group": "order/${id}"}
            for i in range(4)
        ],
    }
    gather = {
        "name": "gather",
        "on": r"^line/(?P<id>\d+)/\d+$",
        "join": {"group": "order/${id}", "expect": "fan-out"},
        "make": {"task": "ship/${id} (${join.group})", "queue": "ship"},
    }
    cfg = config(split, gather)
    route(r, cfg, "order/9")
    assert sorted(r.lrange("lines", 0, -1)) == [f"line/9/{i}".encode() for i in range(4)]
    route(r, cfg, "line/9/0", "line/9/2", "line/9/2", "line/9/3")
    assert r.llen("ship") == 0
    route(r, cfg, "line/9/1")
    assert r.lrange("ship", 0, -1) == [b"ship/9 (order/9)"]


def test_a_fan_out_member_that_comes_first_is_kept_and_waits_for_the_record(
    r: redis.Redis,
) -> None:
    gather = {
        "name": "gather",
        "on": r"^line/(?P<id>\d+)/\d+$",
        "join": {"group": "order/${id}", "expect": "fan-out"},
        "make": {"task": "ship/${id}", "queue": "ship"},
    }
    split = {
        "name": "split",
        "on": r"^order/(?P<id>\d+)$",
        "make": [{"task": "line/${id}/0", "queue": "lines", "group": "order/${id}"}],
    }
    cfg = config(split, gather)
    route(r, cfg, "line/3/0")  # its expectation is not known: the group never completes
    assert r.llen("ship") == 0
    route(r, cfg, "order/3", "line/3/0")
    assert r.lrange("ship", 0, -1) == [b"ship/3"]


def deadlines(r: redis.Redis, cfg: Config) -> Deadlines:
    rules = RuleSet.compile(cfg).watchers[0]
    return Deadlines(
        scripts=Scripts(r), spec=rules.spec, planner=Planner(rules), dramatiq=DramatiqKeys()
    )


def test_a_deadline_fires_expired_once_and_never_early_nor_for_a_completed_group(
    r: redis.Redis,
) -> None:
    late = {"task": "late/${roll} (${join.group}, ${stage} first)", "queue": "late"}
    cfg = config(pack_rule(deadline_s=0.3, expired=late))
    route(r, cfg, "cut/1", "cut/2", "weigh/2", "inspect/2")  # roll 2 completes in time
    d = deadlines(r, cfg)
    assert d.fire() == []  # not due yet
    time.sleep(0.35)
    first = deadlines(r, cfg).fire()
    again = deadlines(r, cfg).fire()
    assert [(f.group, f.fired, f.queued) for f in first] == [("roll/1", True, 1)]
    assert again == []
    assert r.lrange("late", 0, -1) == [b"late/1 (roll/1, cut first)"]
    route(r, cfg, "weigh/1", "inspect/1")  # the stragglers find the tombstone
    assert r.lrange("pack", 0, -1) == [b"pack/2 of 3 in roll/2"]
    assert stats(r)["pack|expired"] == 1


def test_expire_refuses_a_group_whose_deadline_has_not_come(r: redis.Redis) -> None:
    cfg = config(pack_rule(deadline_s=60, expired={"task": "late/${roll}", "queue": "late"}))
    route(r, cfg, "cut/4")
    keys = JoinKeys.of("done")
    r.zadd(keys.due, {keys.group("roll/4"): 0})  # as if a clock said it was due
    fired = deadlines(r, cfg).fire()
    assert [(f.group, f.fired) for f in fired] == [("roll/4", False)]
    assert r.llen("late") == 0  # the group's own deadline, on Redis's clock: not yet
    assert r.hget(keys.group("roll/4"), "state") == b"open"


def test_join_rules_are_checked_when_the_config_loads() -> None:
    twice = [pack_rule(), pack_rule() | {"on": "^x$"}]
    with pytest.raises(ConfigError, match="a join rule's name must be unique: 'pack'"):
        RuleSet.compile(config(*twice))
    unknown = pack_rule() | {"make": {"task": "${join.sise}", "queue": "q"}}
    with pytest.raises(ConfigError, match=r"unknown variable \$\{join.sise\}.*join.size"):
        RuleSet.compile(config(unknown))
    fan = {
        "name": "f",
        "on": "^(?P<id>x)$",
        "join": {"group": "g/${id}", "expect": "fan-out"},
        "make": {"task": "${join.size}", "queue": "q"},
    }
    with pytest.raises(ConfigError, match=r"unknown variable \$\{join.size\}"):
        RuleSet.compile(config(fan))


def test_on_a_cluster_a_joins_tasks_must_fall_in_the_watchers_slot() -> None:
    def joined(queue: str) -> RuleSet:
        rule = pack_rule() | {"make": {"task": "pack/${roll}", "queue": queue}}
        return RuleSet.compile(
            Config.from_data({"watchers": [{"input_queue": "{w}/done", "rules": [rule]}]})
        )

    assert cluster_problems(joined("{w}/pack"), "dramatiq") == []
    [problem] = cluster_problems(joined("pack"), "dramatiq")
    assert (
        "rule 'pack' make[0]: a join's tasks are queued in the step that closes its group"
        in problem
    )
    assert "give its target the watcher's hash tag" in problem


def test_check_warns_of_groups_that_no_join_rule_reads(tmp_path: Path) -> None:
    split = {
        "name": "split",
        "on": r"^o/(?P<id>\d+)$",
        "make": {"task": "l/${id}", "queue": "{a}/lines", "group": "o/${id}"},
    }
    gather = {
        "name": "gather",
        "on": r"^l/(?P<id>\d+)$",
        "join": {"group": "o/${id}", "expect": "fan-out"},
        "make": {"task": "ship/${id}", "queue": "ship"},
    }
    data = {
        "watchers": [
            {"input_queue": "{a}/done", "rules": [split]},
            {"input_queue": "{b}/done", "rules": [gather]},
        ]
    }
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0
    assert (
        "join group o/${id}, member ${input_task}, expects the members its fan-out recorded"
        in result.output
    )
    assert (
        "warning: rule 'split' records the group 'o/${id}' (make with group:), but no join rule "
        "with expect: 'fan-out' reads the groups of watcher '{a}/done''s keys (resc/joins/{a}/...)"
    ) in result.output


def test_a_fan_out_group_complete_before_its_record_fires_once_from_the_rounds(
    r: redis.Redis,
) -> None:
    gather = {
        "name": "gather",
        "on": r"^line/(?P<id>\d+)/\d+$",
        "join": {"group": "order/${id}", "expect": "fan-out"},
        "make": {"task": "ship/${id}", "queue": "ship"},
    }
    split = {
        "name": "split",
        "on": r"^order/(?P<id>\d+)$",
        "make": [
            {"task": f"line/${{id}}/{i}", "queue": "lines", "group": "order/${id}"}
            for i in range(2)
        ],
    }
    cfg = config(split, gather)
    route(r, cfg, "line/3/0", "line/3/1")  # members a producer knew of, before the record
    route(r, cfg, "order/3")
    assert r.llen("ship") == 0  # the record cannot queue the join's make itself
    fired = deadlines(r, cfg).fire()
    assert [(f.group, f.fired, f.queued) for f in fired] == [("order/3", True, 1)]
    assert deadlines(r, cfg).fire() == []
    route(r, cfg, "line/3/1")  # late: the tombstone
    assert r.lrange("ship", 0, -1) == [b"ship/3"]
    assert stats(r)["gather|completed"] == 1

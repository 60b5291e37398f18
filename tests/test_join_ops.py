"""Operating joins on a real server: open groups in ``status``, one group read, and an
operator's complete or drop, each one atomic step that refuses a group no longer open."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import WrongType
from resc_dramatiq.ops.status import gather
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.store.join_ops import GroupNotOpen, close_group, close_read, read_group
from resc_dramatiq.store.joins import JoinKeys
from resc_dramatiq.store.keys import DramatiqKeys
from tests.test_joins import pack_rule, route, stats

FAN_OUT = {
    "name": "treat",
    "on": r"^acq/(?P<p>\d+)$",
    "make": {"task": "trt/${p}/1", "queue": "trt", "group": "proc/${p}"},
}
RULES: dict[str, Any] = {
    "watchers": [
        {
            "input_queue": "done",
            "rules": [pack_rule(deadline_s=600, expired={"task": "late/${roll}", "queue": "late"})],
        }
    ]
}
CFG = Config.from_data(RULES)
RULESET = RuleSet.compile(CFG)
KEYS = JoinKeys.of("done")
NS = DramatiqKeys("dramatiq")


def planner() -> Planner:
    return Planner(RULESET.watchers[0])


def close(r: redis.Redis, group: str, action: str) -> Any:
    return close_group(r, planner(), group, action, dramatiq=NS)  # type: ignore[arg-type]


@pytest.fixture
def config_file(write_config: Callable[[str], Path]) -> Path:
    return write_config(json.dumps(RULES))


def joins_cli(redis_url: str, config_file: Path, command: str, *args: str) -> Result:
    argv = ["joins", command, str(config_file), *args, "--redis-url", redis_url]
    return CliRunner().invoke(main, argv)


# --- reading ----------------------------------------------------------------------------


def test_status_shows_open_groups_per_join_rule_oldest_first_with_members_and_deadline(
    r: redis.Redis,
) -> None:
    route(r, CFG, "cut/1", "weigh/1", "cut/2", "cut/3", "weigh/3", "inspect/3")
    [status] = gather(RULESET, r)
    [join] = status.joins
    assert join.rule == "pack" and join.open == 2 and join.counters["completed"] == 1
    assert [(g.name, g.seen, g.expect) for g in join.oldest] == [("roll/1", 2, 3), ("roll/2", 1, 3)]
    assert join.next_deadline_in_s is not None and 590 < join.next_deadline_in_s <= 600
    assert all(0 <= g.age_s < 10 and g.due_in_s is not None for g in join.oldest)


def test_a_group_is_read_with_its_members_seen_expected_and_missing(r: redis.Redis) -> None:
    route(r, CFG, "weigh/4", "cut/4", "cut/4")
    group = read_group(r, KEYS, "roll/4")
    assert group.state == "open" and group.rule == "pack" and group.listed
    assert (group.members, group.expected, group.missing) == (
        ("cut", "weigh"),
        ("cut", "inspect", "weigh"),
        ("inspect",),
    )
    assert (group.progress, group.expect) == (2, 3)
    assert group.due_ms is not None and group.first_ms is not None
    assert group.due_ms - group.first_ms == 600_000
    assert read_group(r, KEYS, "roll/none").state == ""


# --- complete and drop ------------------------------------------------------------------


def test_complete_fires_the_join_make_once_from_the_first_member_and_leaves_a_tombstone(
    r: redis.Redis,
) -> None:
    route(r, CFG, "cut/5", "weigh/5")
    closed = close(r, "roll/5", "complete")
    assert closed.queued == 1 and closed.tasks == ["pack/5 of 3 in roll/5"]
    assert r.lrange("pack", 0, -1) == [b"pack/5 of 3 in roll/5"]
    assert r.hget(KEYS.group("roll/5"), "state") == b"done"
    assert r.zcard(KEYS.open) == r.zcard(KEYS.due) == r.hlen(KEYS.counts) == 0
    assert stats(r)["pack|completed"] == 1
    route(r, CFG, "inspect/5")  # the missing member, late: nothing
    assert r.llen("pack") == 1 and stats(r)["pack|late"] == 1
    with pytest.raises(GroupNotOpen, match="group 'roll/5' is not open: it is done"):
        close(r, "roll/5", "complete")
    assert r.llen("pack") == 1


def test_drop_closes_the_group_without_firing_and_its_late_members_do_nothing(
    r: redis.Redis,
) -> None:
    route(r, CFG, "cut/6")
    assert close(r, "roll/6", "drop").queued == 0
    assert r.hget(KEYS.group("roll/6"), "state") == b"dropped"
    route(r, CFG, "weigh/6", "inspect/6")
    assert r.llen("pack") == 0 and r.llen("late") == 0
    assert stats(r)["pack|dropped"] == 1 and stats(r)["pack|late"] == 2
    with pytest.raises(GroupNotOpen, match="there is no such group"):
        close(r, "roll/404", "drop")


def test_a_group_completed_by_its_last_member_meanwhile_is_not_completed_again(
    r: redis.Redis,
) -> None:
    route(r, CFG, "cut/7", "weigh/7")
    read = read_group(r, KEYS, "roll/7")
    route(r, CFG, "inspect/7")
    with pytest.raises(GroupNotOpen, match="it is done"):
        close_read(r, planner(), read, "complete", dramatiq=NS)
    assert r.llen("pack") == 1


def test_two_operators_completing_one_group_fire_its_make_once(r: redis.Redis) -> None:
    route(r, CFG, "cut/12")
    first, second = read_group(r, KEYS, "roll/12"), read_group(r, KEYS, "roll/12")
    assert close_read(r, planner(), first, "complete", dramatiq=NS).queued == 1
    with pytest.raises(GroupNotOpen, match="it is done"):
        close_read(r, planner(), second, "drop", dramatiq=NS)
    assert r.llen("pack") == 1 and stats(r)["pack|completed"] == 1


def test_a_group_dropped_and_opened_anew_meanwhile_is_left_alone(r: redis.Redis) -> None:
    route(r, CFG, "cut/8")
    read = read_group(r, KEYS, "roll/8")
    close(r, "roll/8", "drop")
    r.delete(KEYS.group("roll/8"))  # the tombstone expired
    route(r, CFG, "weigh/8")  # a new first member opens the group again
    with pytest.raises(GroupNotOpen, match="changed meanwhile"):
        close_read(r, planner(), read, "complete", dramatiq=NS)
    assert r.llen("pack") == 0 and r.hget(KEYS.group("roll/8"), "state") == b"open"


def test_a_key_of_another_type_refuses_the_whole_step(r: redis.Redis) -> None:
    route(r, CFG, "cut/9")
    r.set("pack", "not a list")
    with pytest.raises(WrongType, match="key 'pack' holds a string, not a list; nothing"):
        close(r, "roll/9", "complete")
    assert r.hget(KEYS.group("roll/9"), "state") == b"open" and r.zcard(KEYS.open) == 1


def test_a_fan_out_group_without_members_can_be_dropped_not_completed(r: redis.Redis) -> None:
    cfg = Config.from_data({"watchers": [{"input_queue": "done", "rules": [FAN_OUT]}]})
    route(r, cfg, "acq/1")
    assert read_group(r, KEYS, "proc/1").expected == ("trt/1/1",)
    with pytest.raises(GroupNotOpen, match="no member yet"):
        close(r, "proc/1", "complete")
    assert close(r, "proc/1", "drop").queued == 0
    assert r.hget(KEYS.group("proc/1"), "state") == b"dropped"


# --- a keyspace anyone may write --------------------------------------------------------


def test_odd_index_entries_and_fields_fail_only_their_own_row(r: redis.Redis) -> None:
    route(r, CFG, "cut/10", "cut/11")
    r.zadd(KEYS.open, {"elsewhere": 0, KEYS.group("str"): 1})
    r.set(KEYS.group("str"), "x")
    r.hset(KEYS.group("roll/11"), "seen", "many")
    r.hset(KEYS.counts, "junk", "x")
    [status] = gather(RULESET, r)
    assert [g.name for g in status.joins[0].oldest] == ["roll/10"]
    odd = "\n".join(status.odd_keys)
    assert "elsewhere: in the join index, not a key under resc/joins/group/" in odd
    assert "resc/joins/group/str: in the join index, holds a string, not a hash" in odd
    assert "resc/joins/group/roll/11: field 'seen' is no integer: 'many'" in odd
    assert "resc/joins/open/count: counter 'junk' is no integer" in odd


def test_an_index_of_another_type_reads_as_empty(r: redis.Redis) -> None:
    r.set(KEYS.open, "x")
    r.set(KEYS.counts, "x")
    [status] = gather(RULESET, r)
    assert status.joins[0].open == 0 and status.joins[0].oldest == []
    assert "resc/joins/open: holds a string, not a zset" in status.odd_keys


def test_reading_a_group_key_of_another_type_says_so(r: redis.Redis) -> None:
    r.set(KEYS.group("g"), "x")
    with pytest.raises(WrongType, match="holds a string, not a hash"):
        read_group(r, KEYS, "g")


# --- the command line -------------------------------------------------------------------


def test_joins_list_shows_each_rule_and_its_oldest_groups(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, CFG, "cut/1", "weigh/1", "cut/2")
    result = joins_cli(redis_url, config_file, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "watcher 'done'"
    assert lines[1].startswith("  join rule 'pack': 2 open, next deadline in 9 min ")
    assert lines[2].startswith("    roll/1  2 of 3, first ") and "deadline in 9 min" in lines[2]
    data = json.loads(joins_cli(redis_url, config_file, "list", "--json").stdout)
    assert data[0]["rules"][0]["open"] == 2


def test_joins_show_prints_members_expected_and_missing(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, CFG, "cut/3")
    result = joins_cli(redis_url, config_file, "show", "roll/3")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "group 'roll/3' (resc/joins/group/roll/3): open" in out
    assert "  members       1 of 3 counted; 1 seen" in out
    assert "  missing       inspect, weigh" in out
    data = json.loads(joins_cli(redis_url, config_file, "show", "roll/3", "--json").stdout)
    assert data["missing"] == ["inspect", "weigh"] and data["event"] == "cut/3"


def test_joins_complete_and_drop_say_what_they_did_and_refuse_a_closed_group(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, CFG, "cut/4", "cut/5")
    dry = joins_cli(redis_url, config_file, "complete", "roll/4", "--dry-run")
    assert dry.stdout == "would queue 'pack/4 of 3 in roll/4' to 'pack'\n" and r.llen("pack") == 0
    done = joins_cli(redis_url, config_file, "complete", "roll/4")
    assert done.stdout == "group 'roll/4' completed: 1 queued of 'pack/4 of 3 in roll/4'\n"
    again = joins_cli(redis_url, config_file, "complete", "roll/4")
    assert again.exit_code == 1
    assert again.stderr == "error: group 'roll/4' is not open: it is done (nothing written)\n"
    assert joins_cli(redis_url, config_file, "drop", "roll/5").stdout == (
        "group 'roll/5' dropped: nothing queued\n"
    )
    shown = joins_cli(redis_url, config_file, "show", "roll/5")
    assert shown.stdout.startswith("group 'roll/5' (resc/joins/group/roll/5): dropped at ")
    assert r.lrange("pack", 0, -1) == [b"pack/4 of 3 in roll/4"]


def test_joins_of_a_group_that_never_was_exit_1(redis_url: str, config_file: Path) -> None:
    for command in ("show", "complete", "drop"):
        result = joins_cli(redis_url, config_file, command, "roll/none")
        assert result.exit_code == 1
        assert "error: no join group 'roll/none': not open, and no tombstone left" in result.stderr


def test_status_prints_the_join_groups_table(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, CFG, "cut/1", "weigh/1")
    result = CliRunner().invoke(main, ["status", str(config_file), "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    assert "join groups" in result.stdout and "roll/1" in result.stdout
    assert "2 of 3" in result.stdout
    data = json.loads(
        CliRunner()
        .invoke(main, ["status", str(config_file), "--json", "--redis-url", redis_url])
        .stdout
    )
    assert data[0]["joins"][0]["oldest"][0]["name"] == "roll/1"


# --- explain (no Redis) -----------------------------------------------------------------

EXPLAINED: dict[str, Any] = {
    "watchers": [
        {
            "input_queue": "done",
            "rules": [
                pack_rule(deadline_s=600, expired={"task": "late/${roll}", "queue": "late"}),
                FAN_OUT,
                {
                    "name": "report",
                    "on": r"^trt/(?P<p>\d+)/\d+$",
                    "join": {"group": "proc/${p}", "expect": "fan-out"},
                    "make": {"task": "report/${p} (${join.group})", "queue": "r"},
                },
            ],
        },
        {
            "input_queue": "done/failed",
            "rules": [
                {
                    "name": "scrap",
                    "on": r"^cut/(?P<roll>\d+)$",
                    "join": {"group": "roll/${roll}", "fail": True},
                    "make": {"task": "scrap/${roll}", "queue": "scrap"},
                }
            ],
        },
    ]
}


@pytest.fixture
def explain(write_config: Callable[[str], Path]) -> Callable[..., Result]:
    rules_file = write_config(json.dumps(EXPLAINED))

    def run(*events: str, json_output: bool = False) -> Result:
        args = ["explain", str(rules_file), *events, *(["--json"] if json_output else [])]
        return CliRunner().invoke(main, args)

    return run


def test_explain_shows_the_group_member_expectation_and_what_completion_fires(
    explain: Callable[..., Result],
) -> None:
    out = explain("cut/7").stdout
    assert (
        "    joins group 'roll/7' as member 'cut', expecting 3: 'cut', 'weigh', 'inspect', "
        "deadline 600 s; when the group completes:\n"
        "    -> task 'pack/7 of 3 in roll/7' to list 'pack' (no dedup set)\n"
        "    at the deadline, if the group is still open (from its first member):\n"
        "    -> task 'late/7' to list 'late' (no dedup set)\n"
    ) in out
    assert "    fails group 'roll/7' if it is open, firing:\n    -> task 'scrap/7'" in out


def test_explain_shows_a_fan_outs_group_and_its_join(explain: Callable[..., Result]) -> None:
    out = explain("acq/3", "trt/3/1").stdout
    assert "-> task 'trt/3/1' to list 'trt' (no dedup set), a member of group 'proc/3'" in out
    assert "joins group 'proc/3' as member 'trt/3/1', expecting the members its fan-out" in out
    assert "-> task 'report/3 (proc/3)' to list 'r'" in out
    [first, second] = json.loads(explain("acq/3", "trt/3/1", json_output=True).stdout)
    assert first["matches"][0]["tasks"][0]["group"] == "proc/3"
    join = second["matches"][0]["join"]
    assert join == {
        "group": "proc/3",
        "member": "trt/3/1",
        "expect": None,
        "members": [],
        "fan_out": True,
        "deadline_s": None,
    }

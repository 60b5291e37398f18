"""Dedup housekeeping: ``ttl_s`` entries leave their set, exactly the old ones."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from resc_dramatiq import Router, RouterOptions
from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.store.housekeeping import Pruner, set_ttls
from tests.helpers import wait_for


def rules(*makes: dict[str, Any]) -> RuleSet:
    rule = {"on": r"^acq/(?P<p>\d+)$", "make": list(makes)}
    return RuleSet.compile(Config.from_data({"watchers": [{"input_queue": "in", "rules": [rule]}]}))


def now_s(r: redis.Redis) -> int:
    return int(r.time()[0])


def aged(r: redis.Redis, key: str, **ages: int) -> None:
    """Entries ``member=age_s`` scored as if queued ``age_s`` seconds ago."""
    now = now_s(r)
    r.zadd(key, {member: now - age for member, age in ages.items()})


TTL = {"task": "t/${p}", "queue": "out", "set": "seen", "ttl_s": 100}


def test_pruning_removes_exactly_the_entries_older_than_the_ttl(r: redis.Redis) -> None:
    aged(r, "seen", old=1000, older=5000, recent=10, fresh=0, edge=95)
    [done] = Pruner(ruleset=rules(TTL), client=r).step()
    assert done.removed == 2
    assert sorted(r.zrange("seen", 0, -1)) == [b"edge", b"fresh", b"recent"]
    assert (done.size, done.old_left) == (3, 0)
    assert 95 <= (done.oldest_age_s or 0) <= 97


def test_a_dry_run_counts_and_changes_nothing(r: redis.Redis) -> None:
    aged(r, "seen", old=1000, older=5000, recent=10)
    before = r.zrange("seen", 0, -1, withscores=True)
    [done] = Pruner(ruleset=rules(TTL), client=r).step(dry_run=True)
    assert done.removed == 2
    assert r.zrange("seen", 0, -1, withscores=True) == before


def test_each_step_removes_at_most_its_bound_and_a_sweep_finishes(r: redis.Redis) -> None:
    aged(r, "seen", **{f"o{i}": 1000 + i for i in range(5)}, keep=1)
    pruner = Pruner(ruleset=rules(TTL), client=r, batch=2)
    [first] = pruner.step()
    assert (first.removed, first.old_left) == (2, 3)
    [total] = pruner.sweep()
    assert total.removed == 3
    assert r.zrange("seen", 0, -1) == [b"keep"]


def test_sets_named_by_templates_are_found_and_pruned(r: redis.Redis) -> None:
    make = {"task": "t/${p}", "queue": "out", "set": "seen/${p}", "ttl_s": 100}
    for p in range(30):
        aged(r, f"seen/{p}", old=500, new=1)
    r.lpush("seen/list", "not a set")  # matches the glob, is no set: left alone
    done = Pruner(ruleset=rules(make), client=r).sweep()
    assert len(done) == 30 and sum(p.removed for p in done) == 30
    assert all(r.zrange(f"seen/{p}", 0, -1) == [b"new"] for p in range(30))
    assert r.lrange("seen/list", 0, -1) == [b"not a set"]


def test_a_set_without_ttl_is_never_pruned(r: redis.Redis) -> None:
    aged(r, "seen", old=10**6)
    assert set_ttls(rules({"task": "t/${p}", "queue": "out", "set": "seen"})) == {}
    shared = rules(TTL, {"task": "u/${p}", "queue": "out2", "set": "seen"})
    assert set_ttls(shared) == {}  # one make without ttl_s: no rule may lose its entry
    assert Pruner(ruleset=shared, client=r).sweep() == []
    assert r.zcard("seen") == 1


def test_a_set_shared_by_makes_uses_the_largest_ttl() -> None:
    longer = {"task": "u/${p}", "queue": "out2", "set": "seen", "ttl_s": 500}
    assert list(set_ttls(rules(TTL, longer)).values()) == [500]


def test_a_task_whose_entry_expired_can_be_queued_again(r: redis.Redis) -> None:
    """The worker died holding t/1: its entry would block t/1 forever in resc."""
    ruleset = rules(TTL)
    aged(r, "seen", **{"t/1": 1000})
    r.lpush("in", "acq/1")
    router = Router(ruleset=ruleset, client=r, instance="a")
    router.run_until_idle()
    assert r.llen("out") == 0  # still deduplicated
    assert router.prune() == 1
    r.lpush("in", "acq/1")
    router.run_until_idle()
    assert r.lrange("out", 0, -1) == [b"t/1"]


def test_a_running_router_prunes_periodically(r: redis.Redis) -> None:
    aged(r, "seen", old=1000, recent=1)
    options = RouterOptions(prune_interval_s=0.1, heartbeat_ttl_s=0.4, block_s=0.1)
    router = Router(ruleset=rules(TTL), client=r, instance="a", options=options)
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: r.zrange("seen", 0, -1) == [b"recent"], what="the old entry pruned")
    finally:
        router.stop()
        thread.join(10)
    r.connection_pool.disconnect()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    rule = {"on": r"^acq/(?P<p>\d+)$", "make": TTL}
    path.write_text(json.dumps({"watchers": [{"input_queue": "in", "rules": [rule]}]}))
    return path


def test_the_prune_command_dry_run_reports_and_keeps(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    aged(r, "seen", old=1000, recent=1)
    result = CliRunner().invoke(main, ["prune", str(config), "--redis-url", redis_url, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "seen: would remove 1 older than 100 s; 2 left" in result.stdout
    assert r.zcard("seen") == 2


def test_the_prune_command_removes_and_reports_json(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    aged(r, "seen", old=1000, recent=1)
    result = CliRunner().invoke(main, ["prune", str(config), "--redis-url", redis_url, "--json"])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    assert (report["set"], report["removed"], report["size"]) == ("seen", 1, 1)
    assert r.zrange("seen", 0, -1) == [b"recent"]

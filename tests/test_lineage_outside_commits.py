"""Lineage records of the tasks queued outside a commit: a join's make fired by a deadline
round or by an operator, a schedule's actor tick. Each keeps its record as a commit does
(same bounds, same expiry), and ``why`` walks it back to its root (real server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from resc_dramatiq.config.model import Config
from resc_dramatiq.ops.why import Chain, why
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.store.join_ops import close_group
from resc_dramatiq.store.joins import Deadlines
from resc_dramatiq.store.keys import DramatiqKeys
from resc_dramatiq.store.scripts import Scripts
from tests.helpers import wait_for

DONE = "done"
T0 = 1_800_000_000  # a multiple of 10

#: go/<roll> makes the raw task cut/<roll>; a resc worker pushes cut/<roll> back when
#: done, a member of the join roll/<roll>, which also waits for weigh (never comes)
STAGES = {
    "name": "stages",
    "on": r"^go/(?P<roll>\d+)$",
    "make": {"queue": "cut", "task": "cut/${roll}"},
}


def join_rule(make: dict[str, Any], **join: Any) -> dict[str, Any]:
    spec = {"group": "roll/${roll}", "member": "${stage}", "expect": ["cut", "weigh"]}
    return {
        "name": "pack",
        "on": r"^(?P<stage>cut|weigh)/(?P<roll>\d+)$",
        "join": spec | join,
        "make": make,
    }


def ruleset(*rules: dict[str, Any], lineage: Any = True, **more: Any) -> RuleSet:
    watcher: dict[str, Any] = {"input_queue": DONE, "rules": [STAGES, *rules]}
    if lineage is not None:
        watcher["lineage"] = lineage
    return RuleSet.compile(Config.from_data({"watchers": [watcher], **more}))


def route(r: redis.Redis, rules: RuleSet, *events: str) -> None:
    r.lpush(DONE, *events)
    Router(ruleset=rules, client=r).run_until_idle()


def chain_of(r: redis.Redis, rules: RuleSet, asked: str) -> Chain:
    found = why(r, [w.spec for w in rules.watchers], "dramatiq", asked)
    assert found is not None, f"no lineage of {asked!r}"
    return found


def steps(chain: Chain) -> list[tuple[str, str | None, str | None]]:
    """Each step as (kind, task or event, rule)."""
    return [(s.kind, s.task or s.name, s.rule) for s in chain.steps]


def buckets(r: redis.Redis) -> list[bytes]:
    return sorted(r.scan_iter(f"{DONE}/lineage/*"))


#: the join's make, as a raw task and as a Dramatiq message
MAKES = {
    "raw": {"queue": "packed", "task": "pack/${roll}"},
    "dramatiq": {"actor": "pack", "task": "pack/${roll}"},
}


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    yield
    r.connection_pool.disconnect()


@pytest.mark.parametrize("kind", ["raw", "dramatiq"])
def test_a_deadlines_expired_make_keeps_its_record_and_why_walks_it_to_the_root(
    r: redis.Redis, kind: str
) -> None:
    rules = ruleset(join_rule(MAKES["raw"], deadline_s=0.2, expired=MAKES[kind]))
    route(r, rules, "go/7")
    route(r, rules, r.rpop("cut").decode())  # a resc worker did cut/7: its done event
    watcher = rules.watchers[0]
    deadlines = Deadlines(
        scripts=Scripts(r), spec=watcher.spec, planner=Planner(watcher), dramatiq=DramatiqKeys()
    )
    wait_for(lambda: any(f.fired for f in deadlines.fire()), what="the deadline fired")
    chain = chain_of(r, rules, "pack/7")
    assert steps(chain) == [
        ("message" if kind == "dramatiq" else "task", "pack/7", "pack"),
        ("task", "cut/7", "stages"),  # the member whose event the expired make is from
        ("event", "go/7", None),
    ]
    assert chain.steps[0].event == "cut/7" and chain.steps[0].status == "queued"
    [bucket] = buckets(r)
    assert 86400 * 1000 < r.pttl(bucket) <= (86400 + 86400 / 8) * 1000


@pytest.mark.parametrize("kind", ["raw", "dramatiq"])
def test_a_group_an_operator_completes_keeps_its_makes_record(r: redis.Redis, kind: str) -> None:
    rules = ruleset(join_rule(MAKES[kind]))
    route(r, rules, "go/8", "cut/8")
    closed = close_group(
        r, Planner(rules.watchers[0]), "roll/8", "complete", dramatiq=DramatiqKeys()
    )
    assert closed.queued == 1
    chain = chain_of(r, rules, "pack/8")
    assert steps(chain) == [
        ("message" if kind == "dramatiq" else "task", "pack/8", "pack"),
        ("task", "cut/8", "stages"),
        ("event", "go/8", None),
    ]
    if kind == "dramatiq":  # asked by its message id: the same chain
        assert chain_of(r, rules, chain.steps[0].name).steps == chain.steps


def test_a_watcher_without_lineage_keeps_no_record_of_a_completed_group(r: redis.Redis) -> None:
    rules = ruleset(join_rule(MAKES["dramatiq"]), lineage=None)
    route(r, rules, "go/9", "cut/9")
    close_group(r, Planner(rules.watchers[0]), "roll/9", "complete", dramatiq=DramatiqKeys())
    assert r.hlen("dramatiq:default.msgs") == 1 and buckets(r) == []


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def schedule(lineage: Any = True, **more: Any) -> RuleSet:
    tick = {"name": "beat", "every_s": 10, "event": "beat/${epoch}", "actor": "beat", **more}
    return ruleset(lineage=lineage, schedules=[tick])


def test_a_schedules_actor_tick_keeps_its_record_and_its_root_is_its_event(
    r: redis.Redis,
) -> None:
    rules = schedule()
    Router(ruleset=rules, client=r, clock=Clock(T0 + 0.3)).run_until_idle()
    [payload] = r.hvals("dramatiq:default.msgs")
    message = json.loads(payload)
    chain = chain_of(r, rules, f"beat/{T0}")
    assert steps(chain) == [
        ("message", f"beat/{T0}", "schedule beat"),
        ("event", f"beat/{T0}", None),
    ]
    tick = chain.steps[0]
    assert (tick.name, tick.status, tick.actor, tick.watcher) == (
        message["message_id"], "queued", "beat", DONE
    )  # fmt: skip
    assert tick.root == tick.name and tick.parent is None
    assert chain_of(r, rules, message["message_id"]).steps == chain.steps


def test_schedule_ticks_keep_records_within_the_buckets_bounds_and_none_when_off(
    r: redis.Redis,
) -> None:
    # 16 records a day: 2 fields per bucket, one message's (its task's pointer and itself)
    rules = schedule(lineage={"max_records": 16}, catch_up="all", grace_s=0)
    Router(ruleset=rules, client=r, clock=Clock(T0 + 0.3)).run_until_idle()
    Router(ruleset=rules, client=r, clock=Clock(T0 + 35)).run_until_idle()  # 3 more at once
    assert r.llen("dramatiq:default") == 4
    [bucket] = buckets(r)
    assert r.hlen(bucket) == 2 and 86400 * 1000 < r.pttl(bucket) <= (86400 + 86400 / 8) * 1000
    r.flushdb()
    Router(ruleset=schedule(lineage=None), client=r, clock=Clock(T0 + 0.3)).run_until_idle()
    assert r.llen("dramatiq:default") == 1 and buckets(r) == []

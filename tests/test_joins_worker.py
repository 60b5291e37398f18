"""Joins written in code (``@on_done(join=Join(...))``) on real Dramatiq workers.

Three stage actors (cut, weigh, inspect) of a roll send their done events; ``pack`` is
sent once per roll, when all three are done, by the worker's inline commits
(``Completion(route_inline=True)``) or by the router.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq import Completion, ConfigError, Join, Registry, Router, build_ruleset
from resc_dramatiq.worker.app import App
from tests.helpers import running, wait_for

STAGES = ("cut", "weigh", "inspect")


#: The registry of this module's actors (the worker finds it in their module).
REG = Registry()


@pytest.fixture
def reg() -> Iterator[Registry]:
    yield REG
    REG.clear()


def declare(
    broker: RedisBroker, reg: Registry, r: redis.Redis, *, deadline_s: float | None = None
) -> dict[str, Any]:
    """The stages (each with its done event) and ``pack``, the join's actor (with
    ``deadline_s``: ``late`` is sent for a roll not packed in time)."""
    actors: dict[str, Any] = {}
    for stage in STAGES:

        def run(roll: int, stage: str = stage) -> None:
            r.hincrby("runs", f"{stage}/{roll}", 1)

        actors[stage] = dramatiq.actor(
            run, broker=broker, actor_name=stage, done_event=f"{stage}/${{roll}}"
        )

    @dramatiq.actor(broker=broker, done_event=False)
    def late(roll: str) -> None:
        r.hincrby("runs", f"late/{roll}", 1)

    expired = {"actor": "late", "task": "late/${roll}", "kwargs": {"roll": "${roll}"}}
    join = Join(group="roll/${roll}", member="${stage}", expect=list(STAGES))
    if deadline_s is not None:
        join = Join(
            group=join.group, member=join.member, expect=join.expect,
            deadline_s=deadline_s, expired=expired,
        )  # fmt: skip

    @reg.on_done(r"^(?P<stage>cut|weigh|inspect)/(?P<roll>\d+)$", join=join)
    @dramatiq.actor(broker=broker, done_event=False)
    def pack(roll: str) -> None:
        r.hincrby("runs", f"pack/{roll}", 1)

    actors["pack"] = pack
    return actors


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    b = RedisBroker(url=redis_url)
    yield b
    b.client.connection_pool.disconnect()


def runs(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall("runs").items()}


def send_rolls(actors: dict[str, Any], rolls: range, *, again: bool = False) -> None:
    for roll in rolls:
        for stage in STAGES:
            actors[stage].send(roll)
        if again:
            actors["cut"].send(roll)  # a stage run twice: its member counts once


def test_a_join_in_code_packs_each_roll_once_routed_in_the_worker(
    broker: RedisBroker, reg: Registry, r: redis.Redis
) -> None:
    broker.add_middleware(Completion(route_inline=True), before=Retries)
    actors = declare(broker, reg, r)
    send_rolls(actors, range(5), again=True)
    with running(broker):
        wait_for(lambda: sum(v for k, v in runs(r).items() if k.startswith("pack/")) == 5)
        broker.join(actors["cut"].queue_name)
    assert {k: v for k, v in runs(r).items() if k.startswith("pack/")} == {
        f"pack/{roll}": 1 for roll in range(5)
    }
    assert r.llen("global/done") == 0  # routed in the worker, not by a router


def test_the_router_packs_the_same_rolls_once(
    broker: RedisBroker, reg: Registry, r: redis.Redis
) -> None:
    broker.add_middleware(Completion(), before=Retries)
    actors = declare(broker, reg, r)
    router = Router(ruleset=build_ruleset(None, App.of_broker(broker)), client=r)
    send_rolls(actors, range(3), again=True)
    with running(broker):
        broker.join(actors["cut"].queue_name)
        wait_for(lambda: r.llen("global/done") == 12)
        router.run_until_idle()
        broker.join(actors["pack"].queue_name)
    packs = {k: v for k, v in runs(r).items() if k.startswith("pack/")}
    assert packs == {f"pack/{roll}": 1 for roll in range(3)}


def test_a_join_in_code_is_checked_where_it_is_written(reg: Registry) -> None:
    with pytest.raises(ConfigError, match="join: a join needs 'expect'"):

        @reg.on_done(r"^(?P<roll>\d+)$", join=Join(group="roll/${roll}"))
        def pack(roll: str) -> None: ...

    with pytest.raises(ConfigError, match=r"join\.member uses unknown variable stage"):

        @reg.on_done(r"^(?P<roll>\d+)$", join=Join(group="r", member="${stage}", expect=2))
        def pack2(roll: str) -> None: ...

    with pytest.raises(ConfigError, match=r"required parameter\(s\) size given by no named group"):

        @reg.on_done(r"^(?P<stage>\w)/(?P<roll>\d+)$", join=Join(group="r", expect=2))
        def pack3(roll: str, size: int) -> None: ...


def test_workers_routing_inline_fire_a_deadline_once_without_a_router(
    redis_url: str, reg: Registry, r: redis.Redis
) -> None:
    brokers = []
    for _ in range(2):  # two worker processes' brokers, each with its Completion
        b = RedisBroker(url=redis_url)
        b.add_middleware(Completion(route_inline=True), before=Retries)
        brokers.append(b)
    for b in brokers:  # the same app on both: stages, the join and its expired make
        actors = declare(b, reg, r, deadline_s=1.0)
    reg_count = len(reg.rules)
    assert reg_count == 2  # the join, declared once per broker
    actors["cut"].send(9)
    actors["weigh"].send(9)
    actors["cut"].send(8)
    actors["weigh"].send(8)
    actors["inspect"].send(8)  # roll 8 completes in time
    try:
        with running(brokers[0]), running(brokers[1]):
            wait_for(lambda: runs(r).get("late/9") == 1, timeout_s=15)
            wait_for(lambda: runs(r).get("pack/8") == 1)
            time.sleep(2.0)  # a few more rounds of both workers' deadline threads
    finally:
        for b in brokers:
            b.client.connection_pool.disconnect()
    done = {k: v for k, v in runs(r).items() if k.startswith(("late/", "pack/"))}
    assert done == {"late/9": 1, "pack/8": 1}

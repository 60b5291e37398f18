"""Joins under real failures: routers and workers killed, replies lost, members repeated,
failed or late, deadlines raced by three routers, a fetched fan-out.

The two soaks (``tests/joins_chaos.py``) run a Dramatiq fan-out/fan-in pipeline on real
workers: 30 groups of 50 members, each member delivered 1 to 3 times, in a random order,
every tenth group missing a member for good. Their long variants (500 groups, marked
``soak``: deselected unless chosen with ``-m soak``) are the issue's full size.
The other proofs run real Dramatiq workers in this process, or router processes.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from pytest_httpserver import HTTPServer

from resc_dramatiq import Completion, Router
from resc_dramatiq.config.model import Config
from resc_dramatiq.rules.fetch import Fetcher
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.store.joins import JoinKeys
from tests.helpers import running, wait_for
from tests.joins_chaos import JoinPlan, JoinSoak, Mode
from tests.procs import routers

DONE = "global/done"
FAILED = "global/done/failed"
STAGES = r"^(?P<stage>cut|weigh|inspect)/(?P<roll>\d+)$"
GROUPS = JoinKeys.of(DONE)


# the soaks


def test_router_kills_and_lost_commit_replies_fire_each_join_once_never_early(
    tmp_path: Path,
) -> None:
    figures = JoinSoak(plan=JoinPlan(mode=Mode.ROUTERS), workdir=tmp_path).run()
    print(figures.report())
    assert figures.kills >= 3 and figures.replies_lost >= 5
    assert figures.late > 0  # members came again after their group completed


def test_worker_kills_with_in_worker_routing_fire_each_join_once_never_early(
    tmp_path: Path,
) -> None:
    figures = JoinSoak(plan=JoinPlan(mode=Mode.INLINE), workdir=tmp_path).run()
    print(figures.report())
    assert figures.kills >= 3 and figures.replies_lost >= 5
    assert figures.late > 0


def long_plan(mode: Mode) -> JoinPlan:
    groups = int(os.environ.get("JOINS_SOAK_GROUPS", "500"))
    return JoinPlan(
        mode=mode, groups=groups, produce_s=max(6.0, groups / 10), quiesce_timeout_s=900.0
    )


@pytest.mark.soak
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("mode", [Mode.ROUTERS, Mode.INLINE])
def test_the_long_join_soak_fires_each_join_once(tmp_path: Path, mode: Mode) -> None:
    figures = JoinSoak(plan=long_plan(mode), workdir=tmp_path).run()
    print(f"\nlong join soak ({mode.value}): {figures.report()}")


# one group of three stages, with real Dramatiq workers in this process


def pack_rule(**join: Any) -> dict[str, Any]:
    spec = {"group": "roll/${roll}", "member": "${stage}", "expect": ["cut", "weigh", "inspect"]}
    return {
        "name": "pack",
        "on": STAGES,
        "join": spec | join,
        "make": {"task": "pack/${roll}", "queue": "pack"},
    }


SCRAP_RULE = {
    "name": "a stage failed",
    "on": STAGES,
    "join": {"group": "roll/${roll}", "fail": True},
    "make": {"task": "scrap/${roll}", "queue": "scrap"},
}


def config(*rules: dict[str, Any], failed: list[dict[str, Any]] | None = None) -> Config:
    watchers: list[dict[str, Any]] = [{"input_queue": DONE, "rules": list(rules)}]
    if failed is not None:
        watchers.append({"input_queue": FAILED, "rules": failed})
    return Config.from_data({"watchers": watchers})


def stats(r: redis.Redis, watcher: str = DONE) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(f"{watcher}/stats").items()}


class Stages:
    """A broker with ``Completion`` (routing inline with ``rules``, if given) and the
    actor ``stage(stage, roll)``: done event ``<stage>/<roll>``, fails for good (no
    retries) while its event is in the set ``failing``; its runs counted in ``runs``."""

    def __init__(self, redis_url: str, r: redis.Redis, rules: Config | None = None) -> None:
        self.broker = RedisBroker(url=redis_url)
        self.broker.add_middleware(Completion(done_queue=DONE, rules=rules), before=Retries)

        @dramatiq.actor(
            broker=self.broker, queue_name="stages", max_retries=0, done_event="${stage}/${roll}"
        )
        def stage(stage: str, roll: str) -> None:
            r.hincrby("runs", f"{stage}/{roll}", 1)
            if r.sismember("failing", f"{stage}/{roll}"):
                raise RuntimeError(f"{stage}/{roll} fails for good")

        self.stage = stage

    def send(self, *events: str) -> list[dramatiq.Message[Any]]:
        return [self.stage.send(*e.split("/")) for e in events]


@pytest.fixture
def closing() -> Iterator[list[RedisBroker]]:
    brokers: list[RedisBroker] = []
    yield brokers
    for broker in brokers:
        broker.close()


def test_members_redelivered_after_their_group_completed_fire_nothing_within_ttl(
    r: redis.Redis, redis_url: str, closing: list[RedisBroker]
) -> None:
    app = Stages(redis_url, r, rules=config(pack_rule(ttl_s=3)))
    closing.append(app.broker)
    everyone = ("cut/1", "weigh/1", "inspect/1")
    with running(app.broker):
        first = app.send(*everyone)
        wait_for(lambda: r.llen("pack"), what="the group completed")
        for message in first:  # the very same messages, as after a lost ack
            app.broker.enqueue(message)
        app.send(*everyone)  # the members run again, as new messages
        wait_for(lambda: stats(r).get("pack|late") == 3, what="the repeats routed")
        wait_for(lambda: r.hgetall("runs") == {e.encode(): b"3" for e in everyone})
        app.broker.join("stages", timeout=10_000)
        assert r.lrange("pack", 0, -1) == [b"pack/1"]
        assert r.hget(GROUPS.group("roll/1"), "state") == b"done"  # still within ttl_s
        # the control: once the tombstone is gone, the same members make a new group
        wait_for(lambda: not r.exists(GROUPS.group("roll/1")), timeout_s=10, what="ttl_s")
        app.send(*everyone)
        wait_for(lambda: r.llen("pack") == 2, what="a new group after ttl_s")
    assert stats(r)["pack|completed"] == 2


def test_a_member_failed_for_good_fires_the_failure_make_once_and_the_join_never(
    r: redis.Redis, redis_url: str, closing: list[RedisBroker]
) -> None:
    app = Stages(redis_url, r)
    closing.append(app.broker)
    router = Router(ruleset=RuleSet.compile(config(pack_rule(), failed=[SCRAP_RULE])), client=r)

    def routed(predicate: Any, what: str) -> None:
        wait_for(lambda: router.run_until_idle() >= 0 and predicate(), what=what)

    r.sadd("failing", "inspect/5")
    with running(app.broker):
        app.send("cut/5", "inspect/5", "weigh/5", "cut/6", "weigh/6", "inspect/6")
        routed(lambda: r.llen("scrap") and r.llen("pack"), "roll 5 failed, roll 6 packed")
        routed(lambda: stats(r).get("pack|matched") == 5, "the first members routed")
        # cut/5 and weigh/5 are late too when the failure, on its own list, came first
        late = stats(r).get("pack|late", 0)
        app.send("inspect/5")  # fails for good again
        routed(lambda: stats(r, FAILED).get("events") == 2, "the second failure routed")
        r.srem("failing", "inspect/5")
        app.send("inspect/5", "cut/5")  # a run that went through after all: too late
        routed(lambda: stats(r).get("pack|late") == late + 2, "the late members routed")
    assert r.lrange(FAILED, 0, -1) == []  # routed, and Completion wrote each failure once
    assert r.lrange("scrap", 0, -1) == [b"scrap/5"]
    assert r.lrange("pack", 0, -1) == [b"pack/6"]
    assert stats(r, FAILED)["a stage failed|failed"] == 1
    assert r.hget(GROUPS.group("roll/5"), "state") == b"failed"
    assert r.zcard("dramatiq:stages.XQ") == 2  # Dramatiq dead-lettered both failed runs


# deadlines raced by three router processes


DEADLINE_S = 1.5


def test_three_routers_fire_each_expired_group_once_never_early_nor_for_a_complete_one(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    late = {"task": "late/${roll}", "queue": "late"}
    rule = pack_rule(deadline_s=DEADLINE_S, expired=late)
    path = tmp_path / "deadlines.json"
    path.write_text(json.dumps({"watchers": [{"input_queue": DONE, "rules": [rule]}]}))
    stale, in_time, racing = range(0, 15), range(100, 115), range(200, 215)
    rolls = [*stale, *in_time, *racing]
    rng = random.Random(3)
    with routers(config=path, redis_url=redis_url, heartbeat_ttl_s=1) as start:
        fleet = [start(instance=f"d{i}", log=tmp_path / f"d{i}.log") for i in range(3)]
        up = lambda: all("started" in p.output() for p in fleet)  # noqa: E731
        wait_for(up, timeout_s=20, what="three routers up")
        r.lpush(DONE, *[f"cut/{n}" for n in [*in_time, *racing]])
        r.lpush(DONE, *[f"{s}/{n}" for n in in_time for s in ("weigh", "inspect")])
        for n in stale:  # their deadlines spread over a second: each router fires some
            r.lpush(DONE, f"cut/{n}")
            time.sleep(1 / len(stale))  # deliberate pauses
        wait_for(lambda: all(r.exists(GROUPS.group(f"roll/{n}")) for n in rolls), timeout_s=20)
        firsts = {n: int(r.hget(GROUPS.group(f"roll/{n}"), "first") or 0) for n in rolls}
        # the racing groups' last members come around their deadline (Redis's clock, in
        # this machine's time): each group either completes or expires, never both
        offsets = {n: firsts[n] / 1000 + DEADLINE_S - 0.3 + 0.6 * rng.random() for n in racing}
        for n in sorted(racing, key=offsets.__getitem__):
            time.sleep(max(0.0, offsets[n] - time.time()))  # deliberate pauses
            r.lpush(DONE, f"weigh/{n}", f"inspect/{n}")

        def closed() -> bool:
            states = [r.hget(GROUPS.group(f"roll/{n}"), "state") for n in rolls]
            return r.llen(DONE) == 0 and all(s in (b"done", b"expired") for s in states)

        wait_for(closed, timeout_s=20, what="every group completed or expired")
        for router in fleet:
            assert router.signal(15) == 0, router.output()
    lates = Counter(t.decode() for t in r.lrange("late", 0, -1))
    packs = Counter(t.decode() for t in r.lrange("pack", 0, -1))
    assert all(c == 1 for c in [*lates.values(), *packs.values()]), (lates, packs)
    assert {f"late/{n}" for n in stale} <= set(lates)
    assert {f"pack/{n}" for n in in_time} <= set(packs)
    for n in racing:  # one or the other
        assert (f"late/{n}" in lates) != (f"pack/{n}" in packs), n
    assert set(lates) | set(packs) == {f"late/{n}" for n in stale} | {
        f"pack/{n}" for n in in_time
    } | {f"{'late' if f'late/{n}' in lates else 'pack'}/{n}" for n in racing}
    for n in rolls:  # never early: Redis's clock at the close, against the first member's
        group = r.hgetall(GROUPS.group(f"roll/{n}"))
        if group[b"state"] == b"expired":
            assert int(group[b"at"]) >= firsts[n] + DEADLINE_S * 1000, (n, group)
    assert stats(r)["pack|expired"] == len(lates)
    assert stats(r)["pack|completed"] == len(packs)
    firing = [sum("expired" in line for line in p.output().splitlines()) for p in fleet]
    raced = sum(f"late/{n}" in lates for n in racing)
    print(f"\nexpired {len(lates)} ({raced} racing), completed {len(packs)}; per router {firing}")


# a fan-out from a fetch


def test_a_fetched_fan_out_of_n_items_completes_exactly_when_its_n_done_events_are_in(
    r: redis.Redis, httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    items = {1: 1, 2: 5, 3: 12}
    for p, n in items.items():
        body = [{"id": f"i{k}"} for k in range(n)]
        httpserver.expect_request(f"/processes/{p}/items").respond_with_json(body)
    split = {
        "name": "treatments",
        "on": r"^acq/(?P<p>\d+)$",
        "fetch": [{"url": httpserver.url_for("/processes/${p}/items"), "returns": "x"}],
        "make": {"task": "trt/${p}/${x.id}", "queue": "treat", "group": "proc/${p}"},
    }
    gather = {
        "name": "report",
        "on": r"^trt/(?P<p>\d+)/\w+$",
        "join": {"group": "proc/${p}", "expect": "fan-out"},
        "make": {"task": "report/${p}", "queue": "report"},
    }
    router = Router(ruleset=RuleSet.compile(config(split, gather)), client=r, expander=fetcher)

    def route(*events: str) -> None:
        r.lpush(DONE, *events)
        router.run_until_idle()

    route(*[f"acq/{p}" for p in items])
    tasks = {p: [f"trt/{p}/i{k}" for k in range(n)] for p, n in items.items()}
    every = [t for done in tasks.values() for t in done]
    assert sorted(t.decode() for t in r.lrange("treat", 0, -1)) == sorted(every)
    rng = random.Random(6)
    lasts = []
    for p, done in tasks.items():  # all but one done event each, repeated, shuffled,
        *some, last = rng.sample(done, len(done))  # and one of no task of the fan-out
        lasts.append(last)
        events = [*some, *some[: len(some) // 2], f"trt/{p}/stray"]
        rng.shuffle(events)
        route(*events)
        assert r.llen("report") == 0
    for last in lasts:
        route(last)
        p = last.split("/")[1]
        assert r.lrange("report", 0, 0) == [f"report/{p}".encode()]
    route(*every)  # every done event again: nothing
    assert sorted(r.lrange("report", 0, -1)) == [f"report/{p}".encode() for p in items]
    assert stats(r)["report|completed"] == len(items)

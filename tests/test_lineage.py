"""Lineage: every rule-made message names its cause, and ``why`` walks a task back to its
root, through the router and through in-worker routing (real server, real workers).

acq/<process>/<product> (``acquire``, sent by the test) -> treat -> propagate -> report.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from resc_dramatiq.config.model import Config
from resc_dramatiq.ops.why import Chain, why
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.lineage import CAUSE_OPTION, TRACE_OPTION
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.worker.completion import Completion
from tests.helpers import wait_for
from tests.procs import routers
from tests.test_middleware_routing import declare_chain, make_broker

DONE = "global/done"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def lineage_rules(*, lineage: Any = True) -> RuleSet:
    """acq -> treat -> propagate -> report, on a watcher keeping lineage records."""
    ids = r"(?P<process_id>\d+)/(?P<product_id>\d+)"
    p = "${process_id}/${product_id}"

    def rule(name: str, on: str, task: str) -> dict[str, Any]:
        return {"name": name, "on": on, "make": {"actor": name, "task": task}}

    rules = [
        rule("treat", f"^acq/{ids}$", f"trt/{p}"),
        rule("propagate", f"^trt/{ids}$", f"prop/{p}"),
        rule("report", f"^prop/{ids}$", f"rep/{p}"),
    ]
    watcher: dict[str, Any] = {"input_queue": DONE, "rules": rules}
    if lineage is not None:
        watcher["lineage"] = lineage
    return RuleSet.compile(Config.from_data({"watchers": [watcher]}))


class Tracing(Middleware):
    """Sets a traceparent on every message in memory, as a tracing middleware would."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        message.options[TRACE_OPTION] = TRACE


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    yield
    r.connection_pool.disconnect()


def chain_of(r: redis.Redis, ruleset: RuleSet, task: str) -> Chain:
    found = why(r, [w.spec for w in ruleset.watchers], "dramatiq", task)
    assert found is not None, f"no lineage of {task!r}"
    return found


def run_chain(
    redis_url: str,
    r: redis.Redis,
    worker_for: Callable[[RedisBroker], dramatiq.Worker],
    *,
    inline: bool,
    completion_lineage: bool = True,
) -> tuple[RuleSet, str]:
    """Run acquire(1, 10) through the chain; the ruleset and acquire's message id."""
    ruleset = lineage_rules()
    completion = Completion(rules=ruleset) if inline else Completion()
    completion.lineage = completion_lineage
    broker = make_broker(redis_url, completion)
    broker.add_middleware(Tracing())
    acquire = declare_chain(broker, r)
    router = None if inline else Router(ruleset=ruleset, client=r)
    thread = None if router is None else threading.Thread(target=router.run)
    if thread is not None:
        thread.start()
    try:
        worker_for(broker)
        sent = acquire.send(1, 10)
        wait_for(lambda: r.hget("runs", "report/1/10") == b"1")
        wait_for(lambda: chain_of(r, ruleset, "rep/1/10").steps[0].status == "done")
    finally:
        if router is not None and thread is not None:
            router.stop()
            thread.join(10)
    return ruleset, sent.message_id


@pytest.mark.parametrize("inline", [False, True], ids=["router", "inline"])
def test_why_walks_a_four_stage_chain_back_to_the_message_that_started_it(
    redis_url: str,
    r: redis.Redis,
    worker_for: Callable[[RedisBroker], dramatiq.Worker],
    inline: bool,
) -> None:
    ruleset, root = run_chain(redis_url, r, worker_for, inline=inline)
    chain = chain_of(r, ruleset, "rep/1/10")
    assert [(s.kind, s.task, s.status) for s in chain.steps] == [
        ("message", "rep/1/10", "done"),
        ("message", "prop/1/10", "done"),
        ("message", "trt/1/10", "done"),
        ("message", None, "done"),  # acquire: sent by the test, its own root
    ]
    assert chain.steps[-1].name == root
    assert {s.root for s in chain.steps[:-1]} == {root}
    assert [s.rule for s in chain.steps[:-1]] == ["report", "propagate", "treat"]
    assert [s.event for s in chain.steps[:-1]] == ["prop/1/10", "trt/1/10", "acq/1/10"]
    assert {s.watcher for s in chain.steps} == {DONE}
    assert {s.trace for s in chain.steps[:-1]} == {TRACE}  # passed on unchanged, hop by hop
    # each step's parent is the next step's message
    assert [s.parent for s in chain.steps[:-1]] == [s.name for s in chain.steps[1:]]
    # the same chain, asked by the last message's id
    assert chain_of(r, ruleset, chain.steps[0].name).steps == chain.steps


def test_without_the_workers_lineage_setting_a_sent_message_leaves_its_event_as_the_root(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    ruleset, _ = run_chain(redis_url, r, worker_for, inline=False, completion_lineage=False)
    chain = chain_of(r, ruleset, "rep/1/10")
    assert [(s.kind, s.name, s.status) for s in chain.steps[-2:]] == [
        ("message", chain.steps[-2].name, "done"),
        ("event", "acq/1/10", "root"),
    ]
    treat = chain.steps[-2]
    assert treat.task == "trt/1/10" and treat.parent is None and treat.root == treat.name
    assert treat.trace is None  # the event came from outside: no trace to pass on


def test_every_rule_made_message_carries_its_cause_in_its_options(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    ruleset = lineage_rules(lineage=None)  # no records: the option is there all the same
    r.lpush(DONE, "acq/1/10")
    Router(ruleset=ruleset, client=r).run_until_idle()
    raw = r.hvals("dramatiq:default.msgs")
    message = json.loads(raw[0])
    cause = message["options"][CAUSE_OPTION]
    assert cause == {
        "root": message["message_id"],  # made from an outside event: its own root
        "parent": None,
        "event": "acq/1/10",
        "rule": "treat",
        "watcher": DONE,
    }
    assert list(r.scan_iter(f"{DONE}/lineage*")) == []  # lineage off: no record


def test_why_walks_every_chain_back_after_a_router_was_killed_mid_stream(
    redis_url: str,
    r: redis.Redis,
    worker_for: Callable[[RedisBroker], dramatiq.Worker],
    tmp_path: Path,
) -> None:
    ruleset = lineage_rules()
    config = tmp_path / "lineage.json"
    config.write_text(json.dumps(ruleset.config.spec.model_dump(exclude_defaults=True)))
    broker = make_broker(redis_url, Completion(lineage=True))
    acquire = declare_chain(broker, r)
    chains = 40
    with routers(config=config, redis_url=redis_url, log=tmp_path / "router.log", batch=4) as start:
        first = start(instance="a")
        worker_for(broker)
        roots = {n: acquire.send(1, n).message_id for n in range(chains)}
        wait_for(lambda: len(r.hkeys("runs")) >= chains + 10, what="the chains under way")
        first.kill()  # SIGKILL, mid-stream: its taken events wait for the next router
        killed_at_runs = len(r.hkeys("runs"))
        start(instance="a")  # the same instance: it commits what the killed one had taken
        wait_for(lambda: len(r.hkeys("runs")) == 4 * chains, timeout_s=30, what="every stage")
    assert killed_at_runs < 4 * chains
    assert set(r.hvals("runs")) == {b"1"}  # every stage ran once
    for n in range(chains):
        chain = chain_of(r, ruleset, f"rep/1/{n}")
        assert [s.task for s in chain.steps[:3]] == [f"rep/1/{n}", f"prop/1/{n}", f"trt/1/{n}"]
        assert chain.steps[3].name == roots[n] and chain.steps[3].rule is None
        assert {s.root for s in chain.steps[:3]} == {roots[n]}


def test_a_message_delivered_twice_keeps_its_cause_and_makes_its_follow_up_once(
    redis_url: str, r: redis.Redis, worker_for: Callable[[RedisBroker], dramatiq.Worker]
) -> None:
    ruleset = lineage_rules()
    r.lpush(DONE, "acq/1/7")  # from outside: treat's message is its own root
    Router(ruleset=ruleset, client=r).run_until_idle()
    [raw] = r.hvals("dramatiq:default.msgs")
    treat = dramatiq.Message.decode(raw)
    broker = make_broker(redis_url, Completion(rules=ruleset))
    declare_chain(broker, r)
    broker.enqueue(treat)  # the very same message again, as after a lost ack
    worker_for(broker)
    wait_for(lambda: r.hget("runs", "treat/1/7") == b"2", what="treat ran twice")
    wait_for(lambda: r.hget("runs", "report/1/7") == b"1", what="the chain's end")
    chain = chain_of(r, ruleset, "rep/1/7")
    assert [(s.kind, s.task or s.name) for s in chain.steps] == [
        ("message", "rep/1/7"),
        ("message", "prop/1/7"),
        ("message", "trt/1/7"),
        ("event", "acq/1/7"),
    ]
    assert chain.steps[2].name == treat.message_id
    assert {s.root for s in chain.steps[:3]} == {treat.message_id}  # no new root
    assert r.hget("runs", "propagate/1/7") == b"1"


def join_rules() -> RuleSet:
    """go/<roll> makes cut and weigh; when both are done, pack (a join)."""
    made = [{"actor": s, "task": f"{s}/${{roll}}"} for s in ("cut", "weigh")]
    rules = [
        {"name": "stages", "on": r"^go/(?P<roll>\d+)$", "make": made},
        {
            "name": "pack",
            "on": r"^(?P<stage>cut|weigh)/(?P<roll>\d+)$",
            "join": {"group": "roll/${roll}", "member": "${stage}", "expect": ["cut", "weigh"]},
            "make": {"actor": "pack", "task": "pack/${roll}", "kwargs": {"roll": "${roll}"}},
        },
    ]
    watcher = {"input_queue": DONE, "lineage": True, "rules": rules}
    return RuleSet.compile(Config.from_data({"watchers": [watcher]}))


@pytest.mark.parametrize("inline", [False, True], ids=["router", "inline"])
def test_a_joins_make_names_the_completing_member_and_lists_every_members_message(
    redis_url: str,
    r: redis.Redis,
    worker_for: Callable[[RedisBroker], dramatiq.Worker],
    inline: bool,
) -> None:
    ruleset = join_rules()
    broker = make_broker(redis_url, Completion(rules=ruleset) if inline else Completion())
    for stage in ("cut", "weigh", "pack"):

        def run(roll: str, stage: str = stage) -> None:
            r.hincrby("runs", f"{stage}/{roll}", 1)

        dramatiq.actor(run, actor_name=stage, broker=broker)
    router = Router(ruleset=ruleset, client=r)
    r.lpush(DONE, "go/1")
    router.run_until_idle()  # go/1 -> cut, weigh (their own roots)
    thread = None if inline else threading.Thread(target=router.run)
    if thread is not None:
        thread.start()
    try:
        worker_for(broker)
        wait_for(lambda: r.hget("runs", "pack/1") == b"1", what="pack ran")
        chain = wait_for(
            lambda: (c := chain_of(r, ruleset, "pack/1")).steps[0].status == "done" and c
        )
    finally:
        if thread is not None:
            router.stop()
            thread.join(10)
    pack = chain.steps[0]
    members = {chain_of(r, ruleset, f"{s}/1").steps[0].name for s in ("cut", "weigh")}
    assert set(pack.members) == members
    assert pack.parent in members and chain.steps[1].name == pack.parent  # the completing one
    assert pack.rule == "pack" and pack.event in ("cut/1", "weigh/1")
    assert [s.kind for s in chain.steps] == ["message", "message", "event"]

"""The router on a real Redis Cluster (three primaries, three replicas, from the tests'
server binary): batches whose tasks spread over many hash slots, through the outbox.

Each watcher's keys share its input list's slot (``{w}/done``); the tasks fall in
slots of their own (``{t<n>}/todo`` with its dedup set, ``plain/<n>`` without one). A
router that dies between its commit and the end of the outbox entry is simulated by
the production path cut short (the commit sent and read, never finished); the rest of
the proof, with real ``kill -9``, is in ``test_cluster_chaos.py``.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from redis.cluster import RedisCluster

from resc_dramatiq import Completion, Config, Router, RuleSet
from resc_dramatiq.ops.why import why
from resc_dramatiq.store.keys import WatcherKeys, applied_keys, schedule_state
from resc_dramatiq.store.slots import key_slot
from tests.cluster import LocalCluster
from tests.helpers import running, wait_for

INPUT = "{w}/done"
ACQ = r"^acq/(?P<p>\d+)$"
MAKES = [
    {"task": "treat/${p}", "queue": "{t${p}}/todo", "set": "{t${p}}/set"},
    {"task": "plain/${p}", "queue": "plain/${p}"},
    {"task": "home/${p}", "queue": "{w}/home"},
]
RULES: dict[str, Any] = {
    "namespace": "{dq}",
    "watchers": [{"input_queue": INPUT, "rules": [{"name": "acq", "on": ACQ, "make": MAKES}]}],
}
RULESET = RuleSet.compile(Config.from_data(RULES))
KEYS = WatcherKeys.of(RULESET.watchers[0].spec, "")


def push(client: RedisCluster, events: list[str]) -> None:
    for i in range(0, len(events), 500):
        client.lpush(INPUT, *events[i : i + 500])


def assert_each_task_once(client: RedisCluster, numbers: range) -> None:
    for n in numbers:
        assert client.lrange(f"{{t{n}}}/todo", 0, -1) == [f"treat/{n}".encode()]
        assert client.lrange(f"plain/{n}", 0, -1) == [f"plain/{n}".encode()]
    home = client.lrange("{w}/home", 0, -1)
    assert sorted(home) == sorted(f"home/{n}".encode() for n in numbers)


def test_the_tasks_of_a_batch_spread_over_many_slots_are_each_queued_once(
    cluster_client: RedisCluster,
) -> None:
    numbers = range(600)
    push(cluster_client, [f"acq/{n}" for n in numbers])
    slots = {key_slot(f"plain/{n}") for n in numbers}
    assert len(slots) > 500  # the batch really spans the cluster
    router = Router(ruleset=RULESET, client=cluster_client)
    assert router.run_until_idle() == 600
    assert_each_task_once(cluster_client, numbers)
    assert cluster_client.hlen(KEYS.outbox) == 0 and cluster_client.zcard(KEYS.outbox_at) == 0
    stats = {k.decode(): int(v) for k, v in cluster_client.hgetall(KEYS.stats).items()}
    assert stats["events"] == 600 and stats["queued"] == 1800
    assert stats["acq|queued"] == 1800


def test_a_repeated_event_is_deduplicated_in_its_own_slot(cluster_client: RedisCluster) -> None:
    push(cluster_client, ["acq/7", "acq/7"])
    Router(ruleset=RULESET, client=cluster_client).run_until_idle()
    assert cluster_client.lrange("{t7}/todo", 0, -1) == [b"treat/7"]
    assert cluster_client.llen("plain/7") == 2  # no dedup set: each event makes one
    stats = {k.decode(): int(v) for k, v in cluster_client.hgetall(KEYS.stats).items()}
    assert stats["deduplicated"] == 1 and stats["acq|deduplicated"] == 1


def commit_and_die(client: RedisCluster, events: list[str], instance: str = "dead") -> Any:
    """What a router killed right after its commit leaves: the commit made, the
    outbox entry never finished. Returns the commit (encoded and its result)."""
    push(client, events)
    router = Router(ruleset=RULESET, client=client, instance=instance)
    router.heartbeat()
    loop = router.loops[0]
    batch = loop.take(block=False)
    assert batch is not None
    pending = loop.store.commit(batch)
    return router, pending, pending.committed()  # the commit's answer; the outbox not applied


def test_an_outbox_entry_left_by_a_dead_router_is_finished_once_by_another(
    cluster_client: RedisCluster,
) -> None:
    numbers = range(50)
    _dead, pending, result = commit_and_die(cluster_client, [f"acq/{n}" for n in numbers])
    assert result.queued == 50  # the home slot's tasks, with the commit
    assert cluster_client.hlen(KEYS.outbox) == 1
    assert cluster_client.llen("plain/3") == 0  # the other slots wait for the outbox
    other = Router(ruleset=RULESET, client=cluster_client, instance="alive")
    assert other.sweep_outbox(0) == 1
    assert_each_task_once(cluster_client, numbers)
    assert other.sweep_outbox(0) == 0
    # the dead router wakes up and finishes what it had in hand: nothing is doubled
    pending.result()
    assert_each_task_once(cluster_client, numbers)
    stats = {k.decode(): int(v) for k, v in cluster_client.hgetall(KEYS.stats).items()}
    assert stats["queued"] == 150
    assert cluster_client.hlen(KEYS.outbox) == 0


def test_a_fresh_entry_is_left_to_its_router_until_the_grace_period_ends(
    cluster_client: RedisCluster,
) -> None:
    commit_and_die(cluster_client, ["acq/1"])
    other = Router(ruleset=RULESET, client=cluster_client, instance="alive")
    assert other.sweep_outbox(60_000) == 0
    assert cluster_client.hlen(KEYS.outbox) == 1
    assert other.sweep_outbox(0) == 1


def test_two_routers_finishing_the_same_entry_at_once_queue_each_task_once(
    cluster_client: RedisCluster,
) -> None:
    numbers = range(200)
    commit_and_die(cluster_client, [f"acq/{n}" for n in numbers])
    routers = [Router(ruleset=RULESET, client=cluster_client, instance=f"r{i}") for i in range(4)]
    start = threading.Barrier(len(routers))
    settled: list[int] = []

    def sweep(router: Router) -> None:
        start.wait(timeout=10)
        settled.append(router.sweep_outbox(0))

    threads = [threading.Thread(target=sweep, args=(r,)) for r in routers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(settled) == 1
    assert_each_task_once(cluster_client, numbers)
    stats = {k.decode(): int(v) for k, v in cluster_client.hgetall(KEYS.stats).items()}
    assert stats["queued"] == 600


@pytest.fixture
def broker(cluster: LocalCluster, cluster_client: RedisCluster) -> Any:
    from resc_dramatiq import connect

    broker = RedisBroker(client=connect(cluster.url), namespace="{dq}")
    dramatiq.set_broker(broker)
    yield broker
    broker.close()


def test_dramatiq_messages_routed_on_a_cluster_run_on_a_real_worker(
    broker: RedisBroker, cluster_client: RedisCluster
) -> None:
    ran: list[str] = []

    @dramatiq.actor(queue_name="work", broker=broker)
    def work(p: str) -> None:
        ran.append(p)

    make = {"actor": "work", "queue": "work", "args": ["${p}"], "set": "{dq}/work/todo"}
    rule = {"on": ACQ, "make": make}
    rules = {"namespace": "{dq}", "watchers": [{"input_queue": INPUT, "rules": [rule]}]}
    push(cluster_client, [f"acq/{n}" for n in range(30)] + ["acq/3"])
    Router(ruleset=RuleSet.compile(Config.from_data(rules)), client=cluster_client).run_until_idle()
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: len(ran) >= 30, timeout_s=20, what="30 messages run")
        broker.join("work", timeout=10_000)
    finally:
        worker.stop()
    assert sorted(ran, key=int) == [str(n) for n in range(30)]


def test_workers_routing_inline_on_a_cluster_queue_each_follow_up_once(
    broker: RedisBroker, cluster_client: RedisCluster
) -> None:
    """Completion(rules=...) commits each done event in the watcher's slot and finishes
    the outbox of the follow-ups in other slots itself."""
    ran: list[str] = []
    two = {"actor": "two", "queue": "two", "args": ["${n}"], "task": "two/${n}", "set": "{dq}/two"}
    out = {"task": "out/${n}", "queue": "{r${n}}/out"}
    fin = {"task": "fin/${n}", "queue": "fin/${n}"}
    rules = [
        {"name": "one", "on": r"^one/(?P<n>\d+)$", "make": [two, out]},
        {"name": "two", "on": r"^two/(?P<n>\d+)$", "make": fin},
    ]
    config = Config.from_data(
        {"namespace": "{dq}", "watchers": [{"input_queue": INPUT, "rules": rules}]}
    )
    broker.add_middleware(Completion(rules=config, done_queue=INPUT), before=Retries)

    @dramatiq.actor(queue_name="one", broker=broker, done_event="one/${n}")
    def one(n: str) -> None:
        ran.append(f"one/{n}")

    @dramatiq.actor(actor_name="two", queue_name="two", broker=broker)
    def two_(n: str) -> None:
        ran.append(f"two/{n}")

    numbers = range(40)
    for n in numbers:
        one.send(str(n))
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        wait_for(
            lambda: all(cluster_client.llen(f"fin/{n}") for n in numbers),
            timeout_s=30,
            what="every chain to its end",
        )
        broker.join("two", timeout=10_000)
    finally:
        worker.stop()
    for n in numbers:
        assert cluster_client.lrange(f"{{r{n}}}/out", 0, -1) == [f"out/{n}".encode()]
        assert cluster_client.lrange(f"fin/{n}", 0, -1) == [f"fin/{n}".encode()]
    assert sorted(ran) == sorted([f"one/{n}" for n in numbers] + [f"two/{n}" for n in numbers])
    assert cluster_client.hlen(KEYS.outbox) == 0
    assert cluster_client.llen(INPUT) == 0  # every done event routed in the worker


def test_a_schedule_on_a_cluster_fires_each_tick_once_with_its_state_in_its_targets_slot(
    cluster_client: RedisCluster,
) -> None:
    schedule = {"name": "clock", "every_s": 60, "event": "tick/${epoch}", "queue": INPUT}
    rules = {**RULES, "schedules": [schedule]}
    ruleset = RuleSet.compile(Config.from_data(rules))
    tick = 1_800_000_000 // 60 * 60
    for instance in ("a", "b", "a"):  # three firings of the same tick
        router = Router(
            ruleset=ruleset, client=cluster_client, instance=instance, clock=lambda: tick + 1.5
        )
        router.run_until_idle()
    state = schedule_state("clock", INPUT)
    assert key_slot(state) == key_slot(INPUT)
    assert cluster_client.hget(state, "tick") == str(tick).encode()
    assert cluster_client.hget(state, "fired") == b"1"
    stats = {k.decode(): int(v) for k, v in cluster_client.hgetall(KEYS.stats).items()}
    assert stats["unmatched"] == 1  # the one event, routed (no rule matches a tick)


@pytest.mark.parametrize("namespace", ["{w}", "{dq}"], ids=["same-slot", "other-slot"])
def test_a_schedules_actor_tick_on_a_cluster_keeps_its_record_where_its_queue_shares_the_slot(
    cluster_client: RedisCluster, namespace: str
) -> None:
    schedule = {"name": "beat", "every_s": 60, "event": "beat/${epoch}", "actor": "beat"}
    watchers = [{**RULES["watchers"][0], "lineage": True}]
    rules = {**RULES, "namespace": namespace, "watchers": watchers, "schedules": [schedule]}
    ruleset = RuleSet.compile(Config.from_data(rules))
    tick = 1_800_000_000 // 60 * 60
    Router(ruleset=ruleset, client=cluster_client, clock=lambda: tick + 1.5).run_until_idle()
    assert cluster_client.llen(f"{namespace}:default") == 1  # fired, no CROSSSLOT
    chain = why(cluster_client, [w.spec for w in ruleset.watchers], namespace, f"beat/{tick}")
    if namespace == "{w}":
        assert chain is not None and chain.steps[0].rule == "schedule beat"
    else:  # its queue is in another slot than the watcher's lineage hashes
        assert chain is None


def script_calls(client: RedisCluster) -> int:
    """``EVALSHA`` calls the primaries served since their counters were reset."""
    infos = client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
    return sum(int(info.get("cmdstat_evalsha", {}).get("calls", 0)) for info in infos.values())


@pytest.mark.parametrize("cross_slot", [True, False])
def test_the_parts_a_node_serves_are_applied_in_one_call_or_part_by_part_without_the_flag(
    cluster_client: RedisCluster, cross_slot: bool
) -> None:
    numbers = range(400)
    push(cluster_client, [f"acq/{n}" for n in numbers])
    router = Router(ruleset=RULESET, client=cluster_client, instance="solo")
    router.loops[0].store.outbox.cross_slot = cross_slot  # type: ignore[union-attr]
    cluster_client.config_resetstat(target_nodes=RedisCluster.PRIMARIES)
    assert router.run_until_idle() == 400
    assert_each_task_once(cluster_client, numbers)
    calls = script_calls(cluster_client)
    slots = len(
        {key_slot(f"plain/{n}") for n in numbers} | {key_slot(f"{{t{n}}}/x") for n in numbers}
    )
    if cross_slot:  # a take, a commit, an apply per node and a settle per batch, and a few more
        assert calls < 40
    else:
        assert calls > slots


@pytest.mark.parametrize("odd", ["target", "applied marker", "applied times"])
def test_a_part_refused_for_a_key_of_the_wrong_type_waits_in_the_outbox_and_nothing_is_half_done(
    cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture, odd: str
) -> None:
    numbers = range(40)
    applied, applied_times = applied_keys(key_slot("plain/7"))
    odd_key = {"target": "plain/7", "applied marker": applied, "applied times": applied_times}[odd]
    cluster_client.set(odd_key, "not what the router writes there")
    push(cluster_client, [f"acq/{n}" for n in numbers])
    router = Router(ruleset=RULESET, client=cluster_client, instance="solo")
    assert router.run_until_idle() == 40  # the batch is committed all the same
    assert "wait in the outbox" in caplog.text and "holds a string" in caplog.text
    assert cluster_client.hlen(KEYS.outbox) == 1
    # the parts the refusing node serves wrote nothing (checked before any write)
    node = cluster_client.nodes_manager.get_node_from_slot(key_slot("plain/7"))
    on_node = [
        n
        for n in numbers
        if cluster_client.keyslot(f"plain/{n}") in node_slots(cluster_client, node)
    ]
    assert all(cluster_client.llen(f"plain/{n}") == 0 for n in on_node if n != 7)
    cluster_client.delete(odd_key)  # the operator fixes the key: a sweep finishes the entry
    assert router.sweep_outbox(0) == 1
    assert_each_task_once(cluster_client, numbers)
    assert cluster_client.hlen(KEYS.outbox) == 0


def task_lists(client: RedisCluster, numbers: range) -> dict[str, list[bytes]]:
    """Every list the tasks of ``numbers`` go to (in other slots than the watcher's)."""
    names = [name for n in numbers for name in (f"{{t{n}}}/todo", f"plain/{n}")]
    return {name: client.lrange(name, 0, -1) for name in names}


def test_an_entry_applied_again_writes_nothing_and_answers_as_the_first_time(
    cluster_client: RedisCluster,
) -> None:
    """A retry after a lost reply, or another router finishing the same entry."""
    numbers = range(60)
    router, pending, _ = commit_and_die(cluster_client, [f"acq/{n}" for n in numbers])
    outbox, entry = router.loops[0].store.outbox, pending.encoded.outbox
    first = outbox.apply(entry)
    assert_each_task_once(cluster_client, numbers)
    lists = task_lists(cluster_client, numbers)
    again = outbox.apply(entry)
    assert task_lists(cluster_client, numbers) == lists
    assert {reply[0] for _, reply in first} == {1} and {reply[0] for _, reply in again} == {2}
    assert [reply[1:] for _, reply in again] == [reply[1:] for _, reply in first]


def test_a_commit_repeated_after_its_entry_was_settled_still_plans_the_batch_taken_with_it(
    cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The next batch is planned while an entry's parts are applied; a repeated commit
    whose entry is gone applies nothing, and the batch taken beside it is planned all
    the same (not left in the taken list, to be handed back as a stray)."""
    router, pending, _ = commit_and_die(cluster_client, [f"acq/{n}" for n in range(20)])
    pending.result()  # applied and settled: only the reply is "lost"
    loop = router.loops[0]
    loop.flight.batches.append(pending.encoded.batch)  # the loop still holds it
    push(cluster_client, [f"acq/{n}" for n in range(20, 50)])
    assert router.run_until_idle() == 20 + 30  # the repeated batch, then the new one
    assert_each_task_once(cluster_client, range(50))
    assert cluster_client.hlen(KEYS.outbox) == 0
    assert "handed back" not in caplog.text


def test_a_part_listed_twice_in_one_call_is_written_once(cluster_client: RedisCluster) -> None:
    router, pending, _ = commit_and_die(cluster_client, ["acq/5", "acq/6"])
    outbox, entry = router.loops[0].store.outbox, pending.encoded.outbox
    part = next(p for p in entry.parts if "{t5}/todo" in p.keys)
    twice = dataclasses.replace(entry, parts=[part, part])
    replies = [reply for _, reply in outbox.apply(twice)]
    assert replies == [[1, 1, 0], [2, 1, 0]]  # applied, then answered as applied before
    assert cluster_client.lrange("{t5}/todo", 0, -1) == [b"treat/5"]
    assert cluster_client.zrange("{t5}/set", 0, -1) == [b"treat/5"]


def node_slots(client: RedisCluster, node: Any) -> set[int]:
    """The slots ``node`` serves, as the client's layout says."""
    slots = client.nodes_manager.slots_cache
    return {slot for slot, nodes in slots.items() if nodes[0].name == node.name}


FIN = "{w}/fin"


def test_an_inline_commit_releasing_a_set_in_another_slot_routes_in_the_worker(
    broker: RedisBroker, cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A task released with its done event (``release: done``) whose dedup set is in
    another slot than the done list is released on its own just before, as a plain done
    event's is; the inline commit then routes it in the worker, nothing said lost."""
    two = {"actor": "two", "queue": "two", "args": ["${n}"], "task": "two/${n}",
           "set": "{dq}/two", "release": "done"}  # fmt: skip
    rules = [
        {"name": "one", "on": r"^one/(?P<n>\d+)$", "make": two},
        {
            "name": "two",
            "on": r"^two/(?P<n>\d+)$",
            "make": {"task": "fin/${n}", "queue": "{w}/fin"},
        },
    ]
    config = Config.from_data(
        {"namespace": "{dq}", "watchers": [{"input_queue": INPUT, "rules": rules}]}
    )
    assert key_slot("{dq}/two") != key_slot(INPUT)
    broker.add_middleware(Completion(rules=config, done_queue=INPUT), before=Retries)

    @dramatiq.actor(queue_name="one", broker=broker, done_event="one/${n}")
    def one(n: str) -> None:
        pass

    @dramatiq.actor(actor_name="two", queue_name="two", broker=broker)
    def two_(n: str) -> None:
        pass

    numbers = range(10)
    for n in numbers:
        one.send(str(n))
    with running(broker):
        wait_for(lambda: cluster_client.llen(FIN) == 10, timeout_s=30, what="fin")
    assert sorted(cluster_client.lrange(FIN, 0, -1)) == sorted(f"fin/{n}".encode() for n in numbers)
    assert cluster_client.zcard("{dq}/two") == 0  # each released with its done event
    assert cluster_client.llen(INPUT) == 0  # every done event routed in the worker
    assert "LOST" not in caplog.text

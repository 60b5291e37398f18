"""The operator commands and the dashboard on a real Redis Cluster (three primaries, three
replicas): ``status``, ``dead``, ``dead messages``, ``prune``, ``listen`` and every page.

The watcher's keys share its input's slot (``{w}/done``); its list targets and their
dedup sets fall in a slot per event (``{o<n>}/out``, ``{o<n>}/seen``), spread over every
primary; Dramatiq's keys are in the ``{dq}`` namespace. Keys found by ``SCAN`` are found
on every primary, or the figures below would be short. Two tests kill a primary (and
start it again): ``listen`` and a pruning round must carry on on the promoted replica.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import PIPE, Popen
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner, Result
from redis.cluster import RedisCluster

from resc_dramatiq import Config, Router, RuleSet
from resc_dramatiq.cli import main
from resc_dramatiq.store.housekeeping import Pruner
from resc_dramatiq.store.keys import DramatiqKeys, WatcherKeys
from resc_dramatiq.store.slots import cluster_problems, key_slot
from tests.cluster import LocalCluster
from tests.dashboard_server import DashboardProcess, csrf_of, dashboard, dead_message, post
from tests.helpers import dead_cli, wait_for
from tests.procs import CLI

INPUT = "{w}/done"
NS = "{dq}"
CHANNEL = "resc/notes"
EVENTS = 30  # acq/0 .. acq/29: their lists and sets over every primary
SET = "{o${p}}/seen"
RULES: dict[str, Any] = {
    "namespace": NS,
    "listener_channel": CHANNEL,
    "watchers": [
        {
            "input_queue": INPUT,
            "unmatched_queue": "{w}/done/unmatched",
            "max_attempts": 1,
            "rules": [
                {
                    "name": "copy",
                    "on": r"^acq/(?P<p>\d+)$",
                    "make": {"task": "t/${p}", "queue": "{o${p}}/out", "set": SET, "ttl_s": 100},
                },
                {
                    "name": "act",
                    "on": r"^acq/(?P<p>\d+)$",
                    "make": {"actor": "work", "queue": "jobs", "args": ["${p}"]},
                },
                {  # bad/<n> fails at once (q has no value): a dead letter
                    "name": "bad",
                    "on": r"^bad(?P<q>[a-z]+)?/(?P<n>\d+)$",
                    "make": {"task": "${n}", "queue": "{o${q}}/out"},
                },
            ],
        }
    ],
}
RULESET = RuleSet.compile(Config.from_data(RULES))
KEYS = WatcherKeys.of(RULESET.watchers[0].spec, "")
DQ = DramatiqKeys(NS)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    return path


def route(client: RedisCluster, *events: str, instance: str = "r1") -> None:
    """Push ``events`` onto the input and run a router on them until idle."""
    client.rpush(INPUT, *events)
    Router(ruleset=RULESET, client=client, instance=instance).run_until_idle()


def acquisitions(count: int = EVENTS) -> list[str]:
    return [f"acq/{n}" for n in range(count)]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def status_json(config: Path, cluster: LocalCluster) -> dict[str, Any]:
    result = cli("status", str(config), "--redis-url", cluster.url, "--json")
    assert result.exit_code == 0, result.output
    [watcher] = json.loads(result.stdout)
    return dict(watcher)


def primaries_of(cluster: LocalCluster, keys: list[str]) -> set[str]:
    return {cluster.owner_of_slot(key_slot(k)).name for k in keys}


def test_the_rules_fit_the_cluster() -> None:
    assert cluster_problems(RULESET, NS) == []


# --- status ------------------------------------------------------------------------------


def test_status_reads_depth_in_flight_dead_letters_and_counters_on_a_cluster(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    route(cluster_client, *acquisitions(), "bad/1", "x")
    cluster_client.rpush(INPUT, "acq/100", "acq/101")
    cluster_client.lpush(KEYS.taken_of("r1"), "acq/99")  # as if r1 held one in hand
    watcher = status_json(config, cluster)
    assert watcher["depth"] == 2
    assert watcher["in_flight"] == 1
    [instance] = watcher["instances"]
    assert (instance["name"], instance["alive"], instance["in_flight"]) == ("r1", True, 1)
    assert watcher["dead_letter"] == 1 and watcher["unmatched_kept"] == 1
    counters = watcher["counters"]
    assert (counters["events"], counters["queued"], counters["dead"]) == (32, 60, 1)
    rules = {r["name"]: r for r in watcher["rules"]}
    assert rules["copy"]["queued"] == rules["act"]["queued"] == EVENTS


def test_status_finds_targets_and_sets_on_every_primary(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    route(cluster_client, *acquisitions())
    watcher = status_json(config, cluster)
    lists = {t["key"]: t["depth"] for t in watcher["targets"] if t["kind"] == "list"}
    assert lists == {f"{{o{n}}}/out": 1 for n in range(EVENTS)}
    assert len(primaries_of(cluster, list(lists))) == 3  # the scan went everywhere
    sets = {s["key"]: s["size"] for s in watcher["sets"]}
    assert sets == {f"{{o{n}}}/seen": 1 for n in range(EVENTS)}
    [jobs] = [t for t in watcher["targets"] if t["kind"] == "dramatiq"]
    assert (jobs["key"], jobs["depth"], jobs["delayed"], jobs["dead_lettered"]) == (
        "jobs", EVENTS, 0, 0
    )  # fmt: skip


def leave_an_outbox_entry(client: RedisCluster) -> None:
    """What a router killed between its commit and the end of its outbox entry leaves."""
    client.rpush(INPUT, *acquisitions(10))
    router = Router(ruleset=RULESET, client=client, instance="dead")
    router.heartbeat()
    loop = router.loops[0]
    batch = loop.take(block=False)
    assert batch is not None
    loop.store.commit(batch).committed()  # the commit made, its outbox entry not applied


def test_status_shows_the_outbox_entries_a_router_left(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    leave_an_outbox_entry(cluster_client)
    watcher = status_json(config, cluster)
    assert watcher["outbox"] == 1
    assert 0 <= watcher["outbox_oldest_age_s"] < 30
    table = cli("status", str(config), "--redis-url", cluster.url)
    assert table.exit_code == 0, table.output
    assert "outbox (cluster)" in table.stdout


def test_status_tables_on_a_cluster_say_the_outbox_is_empty(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    route(cluster_client, *acquisitions(3))
    table = cli("status", str(config), "--redis-url", cluster.url)
    assert table.exit_code == 0, table.output
    assert "{o2}/out" in table.stdout and "{o2}/seen" in table.stdout
    [row] = [line for line in table.stdout.splitlines() if "outbox (cluster)" in line]
    assert row.split()[-2] == "0"


# --- dead letters ------------------------------------------------------------------------


def test_dead_letters_are_listed_requeued_and_dropped_on_a_cluster(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    route(cluster_client, "bad/1", "bad/2", "bad/3")
    listed = dead_cli(cluster.url, config, "list", "--json")
    assert listed.exit_code == 0, listed.output
    [watcher] = json.loads(listed.stdout)
    assert sorted(x["event"] for x in watcher["letters"]) == ["bad/1", "bad/2", "bad/3"]
    requeued = dead_cli(cluster.url, config, "requeue", "bad/2")
    assert requeued.exit_code == 0, requeued.output
    assert cluster_client.lrange(INPUT, 0, -1) == [b"bad/2"]
    dropped = dead_cli(cluster.url, config, "drop", "--all")
    assert dropped.exit_code == 0, dropped.output
    assert "2 dropped" in dropped.stdout
    assert cluster_client.llen(KEYS.dead) == 0


def test_dead_messages_are_listed_requeued_and_dropped_on_a_cluster(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    ids = [dead_message(cluster_client, [n], namespace=NS) for n in range(3)]
    listed = dead_cli(cluster.url, config, "messages", "--json")
    assert listed.exit_code == 0, listed.output
    [queue] = json.loads(listed.stdout)
    assert sorted(m["redis_id"] for m in queue["messages"]) == sorted(ids)
    requeued = dead_cli(cluster.url, config, "messages-requeue", ids[0])
    assert requeued.exit_code == 0, requeued.output
    assert cluster_client.lrange(DQ.queue("jobs"), 0, -1) == [ids[0].encode()]
    assert cluster_client.hexists(DQ.messages("jobs"), ids[0])
    dropped = dead_cli(cluster.url, config, "messages-drop", "--all")
    assert dropped.exit_code == 0, dropped.output
    assert cluster_client.zcard(DQ.dead("jobs")) == 0
    assert cluster_client.hlen(DQ.dead_messages("jobs")) == 0


# --- prune -------------------------------------------------------------------------------


def aged_sets(client: RedisCluster, count: int = EVENTS) -> list[str]:
    """A dedup set per ``n`` with one old entry and one fresh; the sets' names."""
    now = int(client.time()[0])
    sets = [f"{{o{n}}}/seen" for n in range(count)]
    with client.pipeline(transaction=False) as pipe:
        for key in sets:
            pipe.zadd(key, {"old": now - 1000, "fresh": now})
        pipe.execute()
    return sets


def test_prune_removes_old_entries_of_sets_on_every_primary(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    sets = aged_sets(cluster_client)
    assert len(primaries_of(cluster, sets)) == 3
    result = cli("prune", str(config), "--redis-url", cluster.url, "--json")
    assert result.exit_code == 0, result.output
    assert {p["set"]: p["removed"] for p in json.loads(result.stdout)} == dict.fromkeys(sets, 1)
    assert all(cluster_client.zrange(key, 0, -1) == [b"fresh"] for key in sets)


def test_pruning_a_step_at_a_time_goes_round_every_primary(
    cluster_client: RedisCluster,
) -> None:
    sets = aged_sets(cluster_client)
    pruner = Pruner(ruleset=RULESET, client=cluster_client, batch=1000)
    removed = 0
    for _ in range(20):  # as a router's periodic pruning does
        removed += sum(p.removed for p in pruner.step())
    assert removed == len(sets)


def test_a_pruning_round_cut_by_a_failover_starts_again_and_finishes(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    sets = aged_sets(cluster_client, 4000)  # more than a SCAN page on each primary
    pruner = Pruner(ruleset=RULESET, client=cluster_client)
    removed = sum(p.removed for p in pruner.step())  # the round is under way on each
    victim = cluster.kill_primary_of(sets[0])
    try:
        cluster.wait_promoted(victim)
        with pytest.raises(redis.ConnectionError):  # the failed node's cursor
            pruner.step()
        removed += sum(p.removed for p in pruner.sweep())
    finally:
        cluster.restart(victim)
    assert removed == len(sets)
    with cluster_client.pipeline(transaction=False) as pipe:
        for key in sets:
            pipe.zcard(key)
        assert set(pipe.execute()) == {1}


# --- listen ------------------------------------------------------------------------------


def subscribers(cluster: LocalCluster) -> int:
    """The subscriptions to :data:`CHANNEL` on every live node (each counts its own)."""
    return sum(n for node in cluster.live() for _, n in node.client().pubsub_numsub(CHANNEL))


@contextmanager
def listening(config: Path, cluster: LocalCluster, count: int) -> Iterator[Popen[bytes]]:
    """``resc-dramatiq listen CONFIG --count COUNT`` on the cluster, once subscribed."""
    args = [CLI, "listen", str(config), "--redis-url", cluster.url, "--count", str(count)]
    with Popen(args, stdout=PIPE, stderr=PIPE) as process:
        try:
            wait_for(lambda: subscribers(cluster), timeout_s=10, what="listen subscribed")
            yield process
        finally:
            process.kill()


def test_listen_on_a_cluster_prints_what_routers_publish_on_any_node(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    with listening(config, cluster, 6) as process:
        route(cluster_client, "acq/1", "acq/2")
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    # the DONE lines come with the commit, in the watcher's slot; a TRIGGER line comes
    # with its task, from the node of the task's slot
    assert sorted(out.splitlines()) == [
        b"{w}/done/taken DONE acq/1",
        b"{w}/done/taken DONE acq/2",
        b"{w}/done/taken TRIGGER acq/1 -> acq/1",
        b"{w}/done/taken TRIGGER acq/1 -> t/1",
        b"{w}/done/taken TRIGGER acq/2 -> acq/2",
        b"{w}/done/taken TRIGGER acq/2 -> t/2",
    ]


def test_listen_subscribes_again_after_the_node_it_listened_on_failed_over(
    cluster: LocalCluster, cluster_client: RedisCluster, config: Path
) -> None:
    with listening(config, cluster, 3) as process:
        victim = cluster.kill_primary_of(CHANNEL)  # redis-py subscribed on the slot's primary
        try:
            cluster.wait_promoted(victim)
            wait_for(lambda: subscribers(cluster), timeout_s=15, what="listen subscribed again")
            route(cluster_client, "acq/1")
            out, err = process.communicate(timeout=20)
        finally:
            cluster.restart(victim)
    assert process.returncode == 0, err
    assert b"{w}/done/taken DONE acq/1" in out.splitlines()


# --- dashboard ---------------------------------------------------------------------------


@pytest.fixture
def site(cluster: LocalCluster, config: Path, tmp_path: Path) -> Iterator[DashboardProcess]:
    """``resc-dramatiq dashboard CONFIG --redis-url redis+cluster://...``."""
    with dashboard(config, cluster.url, tmp_path) as running:
        yield running


def get(site: DashboardProcess, page: str) -> str:
    answer = httpx.get(f"{site.url}{page}", timeout=10)
    assert answer.status_code == 200, (page, answer.text)
    return answer.text


def test_every_dashboard_page_answers_on_a_cluster(
    site: DashboardProcess, cluster_client: RedisCluster
) -> None:
    route(cluster_client, *acquisitions(), "bad/1")
    dead_message(cluster_client, [1], namespace=NS)
    for page in ["/pipeline", "/watchers", "/watchers/0", "/targets", "/dedup", "/processes",
                 "/schedules", "/watchers/0/queue?name=jobs", "/watchers/0/set?key={o3}/seen",
                 "/watchers/0/set?key={o3}/seen&q=t/"]:  # fmt: skip
        get(site, page)


def test_the_dashboard_shows_keys_of_every_primary_and_the_outbox(
    site: DashboardProcess, cluster_client: RedisCluster
) -> None:
    route(cluster_client, *acquisitions(), "bad/1")
    targets, sets = get(site, "/targets"), get(site, "/dedup")
    for n in range(EVENTS):
        assert f"{{o{n}}}/out" in targets and f"{{o{n}}}/seen" in sets
    watcher = get(site, "/watchers/0")
    assert "bad/1" in watcher
    assert re.search(r'id="outbox">0<', watcher)


def test_the_processes_page_shows_what_a_worker_holds_on_a_cluster(
    site: DashboardProcess, cluster_client: RedisCluster
) -> None:
    route(cluster_client, *acquisitions(3))
    now_ms = int(cluster_client.time()[0]) * 1000
    cluster_client.zadd(DQ.heartbeats, {"worker-1": now_ms})
    cluster_client.sadd(DQ.acks("worker-1", "jobs"), "m1", "m2")
    page = get(site, "/processes")
    assert "worker-1" in page and "jobs: 2" in page


def test_dashboard_actions_move_dead_letters_and_messages_on_a_cluster(
    site: DashboardProcess, cluster_client: RedisCluster
) -> None:
    route(cluster_client, "bad/1", "bad/2")
    dead_message(cluster_client, [1], namespace=NS)
    csrf = csrf_of(site)
    letters = post(site, "/watchers/0/dead", {"csrf": csrf, "do": "requeue:all", "confirmed": "1"})
    assert letters.headers["location"] == "/watchers/0?notice=2+requeued"
    assert sorted(cluster_client.lrange(INPUT, 0, -1)) == [b"bad/1", b"bad/2"]
    form = {"csrf": csrf, "do": "requeue:all", "confirmed": "1"}
    messages = post(site, "/watchers/0/queue/dead?name=jobs", form)
    assert messages.status_code == 303, messages.text
    assert cluster_client.llen(DQ.queue("jobs")) == 1 and cluster_client.zcard(DQ.dead("jobs")) == 0

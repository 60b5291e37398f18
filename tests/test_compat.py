"""Every library internal the package relies on (``resc_dramatiq.compat``), on real servers.

Each test proves the internal still does what the package needs, so that the runs on the
declared floors and on the newest releases (``scripts/test-versions.sh min|latest
tests/test_compat.py``) fail here, by name, when redis-py or Dramatiq moves one: a
single server for connections and Dramatiq's broker, the session's Redis Cluster for the
slot map, a Sentinel deployment for the Sentinel pool.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from pytest_redis.executor import RedisExecutor
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from resc_dramatiq import compat
from resc_dramatiq.store.cluster import layout_of
from resc_dramatiq.store.connect import connect
from tests.cluster import LocalCluster
from tests.helpers import wait_for
from tests.procs import free_port
from tests.sentinel import SERVICE, sentinel_cluster

# -- hash slots and URLs ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "{w}/done", b"{o7}/out", "no{tag", "{}x", "ü"])
def test_key_slot_is_the_slot_the_cluster_itself_computes(
    cluster_client: RedisCluster, key: str | bytes
) -> None:
    assert compat.key_slot(key) == cluster_client.cluster_keyslot(key)
    assert compat.HASH_SLOTS == 16384


def test_a_redis_url_is_read_as_from_url_reads_it() -> None:
    parts = compat.parse_redis_url("redis://h.example:6390/3")
    assert (parts["host"], parts["port"], parts["db"]) == ("h.example", 6390, 3)
    assert compat.parse_redis_url("unix:///run/redis.sock?db=2")["path"] == "/run/redis.sock"
    with pytest.raises(ValueError):
        compat.parse_redis_url("ftp://h")


# -- connections that look their server up on every connect --------------------------------


class Pointed(compat.ConnectionToMovingServer):
    """A connection sent wherever :attr:`target` says; counts the unreachable ones."""

    def __init__(self, target: tuple[str, int], **kwargs: Any) -> None:
        self.target, self.misses = target, 0
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]

    def address(self) -> tuple[str, int]:
        return self.target

    def unreachable(self) -> None:
        self.misses += 1


def test_a_moving_connection_connects_where_address_says_not_where_it_was_built(
    redis_proc: RedisExecutor, r: redis.Redis
) -> None:
    conn = Pointed((redis_proc.host, redis_proc.port), host="127.0.0.1", port=free_port())
    conn.connect()
    conn.send_command("PING")
    assert conn.read_response() == b"PONG"
    assert (conn.host, conn.port) == (redis_proc.host, redis_proc.port)
    conn.disconnect()  # type: ignore[no-untyped-call]


def test_a_moving_connection_reports_an_address_it_cannot_reach_then_raises(
    redis_proc: RedisExecutor, r: redis.Redis
) -> None:
    dead = ("127.0.0.1", free_port())
    conn = Pointed(dead, host=redis_proc.host, port=redis_proc.port, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        conn.connect()
    assert conn.misses == 1
    assert (conn.host, conn.port) == dead


def test_the_sentinel_pool_and_a_following_connection_are_read_as_the_package_needs() -> None:
    with sentinel_cluster() as deployment:
        client = connect(deployment.url)
        client.ping()
        pool = compat.sentinel_pool(client)
        assert pool is not None
        primary = ("127.0.0.1", deployment.primary().port)
        assert compat.last_primary(pool) == primary
        assert compat.sentinel_service(pool) == SERVICE
        ports = sorted(port for _, port in compat.sentinel_addresses(pool))
        assert ports == sorted(s.port for s in deployment.sentinels)
        # a reconnect through redis-py's plain connect (as its retries do) asks again
        conn = pool.make_connection()
        assert isinstance(conn, compat.SentinelFollowingConnection)
        conn.host, conn.port = "127.0.0.1", free_port()
        redis.Connection.connect(conn)
        assert (conn.host, conn.port) == primary
        conn.send_command("PING")
        assert conn.read_response() == b"PONG"
        conn.disconnect()  # type: ignore[no-untyped-call]
        client.close()


def test_a_plain_client_has_no_sentinel_pool(r: redis.Redis) -> None:
    assert compat.sentinel_pool(r) is None


# -- a cluster client's slot map and node clients -------------------------------------------


@pytest.mark.parametrize("slot", [0, 8191, 16383])
def test_the_primary_of_a_slot_is_the_node_that_serves_it(
    cluster: LocalCluster, cluster_client: RedisCluster, slot: int
) -> None:
    node = compat.primary_of_slot(cluster_client, slot)
    assert int(node.port) == cluster.owner_of_slot(slot).port


def test_the_primaries_of_many_slots_are_read_from_the_map_at_once(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    slots = [0, 5460, 5461, 10922, 10923, 16383]
    nodes = compat.primaries_of_slots(cluster_client, slots)
    one_by_one = [compat.primary_of_slot(cluster_client, s) for s in slots]
    assert [n.name for n in nodes] == [n.name for n in one_by_one]
    assert [int(n.port) for n in nodes] == [cluster.owner_of_slot(s).port for s in slots]


def test_a_slot_the_map_does_not_cover_is_said(cluster_client: RedisCluster) -> None:
    with pytest.raises(redis.exceptions.SlotNotCoveredError, match="slot 16384"):
        compat.primaries_of_slots(cluster_client, [16384])


def test_a_node_client_talks_to_that_node_alone(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    key = "{n}/k"
    node = compat.primary_of_slot(cluster_client, compat.key_slot(key))
    client = compat.node_client(cluster_client, node)
    assert isinstance(client, redis.Redis)
    client.set(key, "v")
    assert cluster.primary_of(key).client().get(key) == b"v"
    assert client.dbsize() == 1  # that node's keyspace, not the cluster's


def test_a_node_is_found_by_its_name_and_an_unknown_name_finds_none(
    cluster_client: RedisCluster,
) -> None:
    node = compat.primary_of_slot(cluster_client, 0)
    assert compat.node_named(cluster_client, node.name) is node
    assert compat.node_named(cluster_client, f"127.0.0.1:{free_port()}") is None


def test_reloading_the_slot_map_learns_a_slot_that_moved(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    slot = compat.key_slot("{moving}")
    home = cluster.owner_of_slot(slot)
    away = next(n for n in cluster.primaries() if n is not home)
    assert int(compat.primary_of_slot(cluster_client, slot).port) == home.port
    cluster.migrate_slot(slot, away)
    try:
        wait_for(lambda: cluster.owner_of_slot_or_none(slot) is away, what="the slot moved")
        compat.reload_slot_map(cluster_client)
        assert int(compat.primary_of_slot(cluster_client, slot).port) == away.port
    finally:
        cluster.migrate_slot(slot, home)
        wait_for(lambda: cluster.owner_of_slot_or_none(slot) is home, what="the slot back")


def test_node_settings_are_what_every_node_client_is_given_but_the_address(
    cluster_client: RedisCluster,
) -> None:
    settings = compat.node_settings(cluster_client)
    assert "host" not in settings and "port" not in settings
    assert settings["socket_keepalive"] is True  # connect's cluster default
    node = compat.primary_of_slot(cluster_client, 0)
    assert redis.Redis(host=node.host, port=node.port, **settings).ping()


def test_the_startup_addresses_are_the_nodes_the_client_was_given(cluster: LocalCluster) -> None:
    first = cluster.nodes[0]
    client = RedisCluster(startup_nodes=[compat.cluster_node("127.0.0.1", first.port)])
    try:
        assert compat.startup_addresses(client)[0] == ("127.0.0.1", first.port)
    finally:
        client.close()


class CountingRetry(Retry):
    """A real retry that counts the calls it is given."""

    calls = 0

    def call_with_retry(self, do: Callable[[], Any], fail: Callable[[Any], Any], *a: Any) -> Any:
        self.calls += 1
        return super().call_with_retry(do, fail, *a)


def test_every_command_of_a_call_retrying_cluster_goes_through_its_retry_but_aimed_ones(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    retry = CountingRetry(NoBackoff(), 1)
    client = compat.CallRetryingCluster(
        call_retry=retry, startup_nodes=[compat.cluster_node("127.0.0.1", cluster.nodes[0].port)]
    )
    try:
        before = retry.calls
        client.set("{c}/k", "v")
        assert client.get("{c}/k") == b"v"
        assert retry.calls == before + 2
        node = compat.primary_of_slot(client, compat.key_slot("{c}/k"))
        assert client.ping(target_nodes=node)  # type: ignore[call-arg]
        assert retry.calls == before + 2  # a node named by the caller: run once
    finally:
        client.close()


# -- Dramatiq's RedisBroker -------------------------------------------------------------------


def test_a_redis_brokers_client_and_namespace_are_read_and_other_brokers_give_none(
    r: redis.Redis,
) -> None:
    assert compat.broker_client(RedisBroker(client=r, namespace="ns")) is r
    assert compat.broker_namespace(RedisBroker(client=r, namespace="ns")) == "ns"
    other = StubBroker()
    assert compat.broker_client(other) is None
    assert compat.broker_namespace(other) == compat.DEFAULT_NAMESPACE


def held_by_a_silent_worker(r: redis.Redis) -> str:
    """A message of queue ``work`` fetched by a broker that then says nothing more."""
    silent = RedisBroker(client=r)
    silent.declare_queue("work")
    silent.enqueue(dramatiq.Message("work", "a", (), {}, {}))
    consumer = silent.consume("work", timeout=100)
    wait_for(lambda: next(consumer) is not None, what="the message fetched")
    assert r.lrange("dramatiq:work", 0, -1) == []
    [message_id] = r.hkeys("dramatiq:work.msgs")
    return str(message_id.decode())


def test_forced_maintenance_writes_the_heartbeat_and_requeues_a_silent_workers_message(
    r: redis.Redis,
) -> None:
    message_id = held_by_a_silent_worker(r)
    broker = RedisBroker(client=r)

    def requeued() -> bool:
        compat.run_maintenance(
            broker, queue="work", heartbeat_timeout_ms=1, command="resc-maintenance"
        )
        return r.lrange("dramatiq:work", 0, -1) == [message_id.encode()]

    wait_for(requeued, what="the silent worker's message back in its queue")
    assert r.zscore("dramatiq:__heartbeats__", broker.broker_id) is not None


def test_the_heartbeat_timeout_set_is_the_one_the_brokers_own_maintenance_uses(
    r: redis.Redis,
) -> None:
    message_id = held_by_a_silent_worker(r)
    broker = RedisBroker(client=r, maintenance_chance=1_000_000)  # on every command
    compat.set_heartbeat_timeout(broker, 1)

    def requeued() -> bool:
        broker.enqueue(dramatiq.Message("work", "a", (), {}, {}))  # dispatch, maintenance
        return message_id.encode() in r.lrange("dramatiq:work", 0, -1)

    wait_for(requeued, what="the silent worker's message back in its queue")


def test_a_cluster_clients_layout_is_kept_beside_it_not_on_it_and_goes_with_it(
    cluster: LocalCluster,
) -> None:
    client = cluster.client()
    before = set(vars(client))
    layout = layout_of(client)
    assert layout_of(client) is layout
    assert set(vars(client)) == before  # nothing set on redis-py's object
    gone = weakref.ref(client)
    client.close()
    del client, layout
    gc.collect()
    assert gone() is None

"""The local Redis Cluster and the client ``connect`` makes of a ``redis+cluster://`` URL:
keys spread over the shards, a primary killed and replaced, a slot moved under writes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from resc_dramatiq import RedisURLError, connect
from resc_dramatiq.store.connect import is_cluster
from tests.cluster import LocalCluster, SlotMigration
from tests.cluster_nodes import Node
from tests.helpers import wait_for

#: Every key with this hash tag lives in one slot.
TAG = "{moving}"


def test_keys_of_many_slots_are_written_and_read_through_connect(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    client = connect(cluster.url)
    assert is_cluster(client)
    keys = [f"k:{i}" for i in range(600)]
    for i, key in enumerate(keys):
        client.set(key, i)
    assert [int(client.get(key)) for key in keys] == list(range(600))
    per_primary = {n.name: n.client().dbsize() for n in cluster.primaries()}
    assert len(per_primary) == 3 and all(per_primary.values()), per_primary
    assert sum(per_primary.values()) == len(keys)
    assert len({key_slot(k.encode()) for k in keys}) > 500
    client.close()


def test_a_killed_primary_is_replaced_by_its_replica_and_the_client_carries_on(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    key = "failover:counter"
    client = connect(cluster.url)
    client.set(key, 1)
    victim = cluster.kill_primary_of(key)
    try:
        started = time.monotonic()
        client.incr(key)  # rides through: retried until the replica serves the slot
        write_s = time.monotonic() - started
        promoted_s = cluster.wait_promoted(victim)
        assert promoted_s < 10, f"replica promoted only after {promoted_s:.1f}s"
        assert write_s < 10, f"the write waited {write_s:.1f}s"
        assert cluster.primary_of(key) is not victim
        assert int(client.incr(key)) >= 2
    finally:
        client.close()
        cluster.restart(victim)


@pytest.fixture
def writer(cluster: LocalCluster, cluster_client: RedisCluster) -> Iterator[_Writer]:
    """A :class:`_Writer` running on the emptied cluster, stopped after the test."""
    running = _Writer(connect(cluster.url))
    running.start()
    yield running
    running.stop()


class _Writer(threading.Thread):
    """Counts up 50 keys of the migrating slot and creates new ones, round after round,
    through its own ``connect`` client; remembers every write that succeeded."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.counted: Counter[str] = Counter()
        self.created: list[str] = []
        self.failed: list[BaseException] = []
        self.done = threading.Event()

    def writes(self) -> int:
        return sum(self.counted.values()) + len(self.created)

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            try:
                key = f"{TAG}:count:{n % 50}"
                self.client.incr(key)
                self.counted[key] += 1
                fresh = f"{TAG}:new:{n}"
                self.client.set(fresh, n)
                self.created.append(fresh)
            except redis.RedisError as e:  # a test failure, reported by stop()
                self.failed.append(e)
                return
            n += 1

    def stop(self) -> None:
        if not self.done.is_set():
            self.done.set()
            self.join(timeout=20)
            self.client.close()


def test_a_slot_moved_with_1000_keys_under_writes_loses_no_write(
    cluster: LocalCluster, cluster_client: RedisCluster, writer: _Writer
) -> None:
    slot = key_slot(TAG.encode())
    cluster_client.mset({f"{TAG}:old:{i}": i for i in range(1000)})

    def some_writes() -> None:
        # between two chunks, writes to keys still on the source, to keys already moved
        # (ASK) and to new keys (created on the target)
        now = writer.writes()
        wait_for(lambda: writer.writes() >= now + 20, timeout_s=10, what="writes")

    migration = cluster.migrate_slot(slot, _another_primary(cluster, slot), some_writes)
    some_writes()  # and after it (the first meets MOVED, the others go to the new owner)
    writer.stop()
    assert not writer.failed, writer.failed

    assert migration.moved >= 1000
    assert cluster.owner_of_slot(slot) is migration.target
    source, target = migration.source.client(), migration.target.client()
    assert source.cluster("COUNTKEYSINSLOT", slot) == 0
    expected = 1000 + len(writer.counted) + len(writer.created)
    assert target.cluster("COUNTKEYSINSLOT", slot) == expected
    for key, count in writer.counted.items():
        assert int(target.get(key)) == count, key
    assert all(target.exists(key) for key in writer.created)


def test_a_script_on_keys_split_by_a_migration_waits_for_its_end(
    cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    first, second = f"{TAG}:a", f"{TAG}:b"
    cluster_client.mset({first: 1, second: 2})
    slot = key_slot(TAG.encode())
    migration = SlotMigration(cluster=cluster, slot=slot, target=_another_primary(cluster, slot))
    migration.begin()
    migration.source.client().execute_command(  # one key moved, the other not yet
        "MIGRATE", "127.0.0.1", migration.target.port, "", 0, 5000, "KEYS", first
    )
    replies: list[object] = []
    script = "return redis.call('incr', KEYS[1]) + redis.call('incr', KEYS[2])"
    call = threading.Thread(
        target=lambda: replies.append(cluster_client.eval(script, 2, first, second))
    )
    call.start()
    call.join(timeout=1.0)  # the servers answer TRYAGAIN: redis-py alone gives up in 0.4 s
    assert call.is_alive() and not replies
    while migration.move_chunk():
        pass
    migration.finish()
    call.join(timeout=10)
    assert replies == [5]


def _another_primary(cluster: LocalCluster, slot: int) -> Node:
    owner = cluster.owner_of_slot(slot)
    return next(n for n in cluster.primaries() if n is not owner)


def test_a_cluster_url_with_a_password_is_masked_in_errors(cluster: LocalCluster) -> None:
    port = cluster.nodes[0].port
    with pytest.raises(RedisURLError) as refused:
        connect(f"redis+cluster://u:hunter2@127.0.0.1:{port}/3")
    assert "hunter2" not in str(refused.value)
    assert f"redis+cluster://u:***@127.0.0.1:{port}/3" in str(refused.value)
    assert "only database 0" in str(refused.value)
    with pytest.raises(redis.RedisError) as failed:
        connect(f"redis+cluster://u:hunter2@127.0.0.1:{port}")
    assert "hunter2" not in str(failed.value)

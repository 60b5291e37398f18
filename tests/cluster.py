"""A real Redis Cluster for the tests: three primaries, each with one replica.

Every node is a process of the binary the other tests use
(:func:`resc_dramatiq.ops.embedded.server_binary`) in cluster mode, on free ports (the
cluster bus on a free port of its own, not port + 10000, which may be taken or past
65535), in a temporary directory, each in a process group of its own. There is no
``valkey-cli`` to build it, so :func:`redis_cluster` does what ``--cluster create``
does, with plain commands: ``CLUSTER ADDSLOTSRANGE`` splits the 16384 slots across the
primaries, ``CLUSTER MEET`` introduces everyone, ``CLUSTER REPLICATE`` gives each primary
its replica. It ends every process group (SIGKILL) and removes the directory on exit,
however the block ended; should the test process itself be killed, a
:class:`tests.procs.Reaper` kills them.

``cluster-node-timeout`` is 1 s, so a killed primary is replaced by its replica within a
few seconds (:meth:`LocalCluster.kill_primary_of`, :meth:`LocalCluster.wait_promoted`).
``cluster-require-full-coverage`` keeps the server's default, yes: between a primary's
death being agreed and its replica's promotion every node answers CLUSTERDOWN, for every
slot. That is what a client meets in production, and what it must ride through; "no"
would let the tests pass with a client that only survives for the other shards.

The session's cluster is the ``cluster`` fixture (one per test session, registered in
``tests/conftest.py``); ``cluster_client`` is a client of it, emptied for the test.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from resc_dramatiq.store.connect import connect_cluster
from tests.cluster_nodes import Node, start_node
from tests.helpers import wait_for
from tests.procs import Reaper

SLOTS = 16384
SHARDS = 3
MIGRATE_CHUNK = 100  # keys per MIGRATE
MIGRATE_TIMEOUT_MS = 5000


@dataclass
class LocalCluster:
    """The running cluster: its nodes (primaries first, as started), its URL, its map."""

    workdir: Path
    reaper: Reaper
    nodes: list[Node] = field(default_factory=list)

    def start(self, name: str, port: int = 0, bus_port: int = 0) -> Node:
        """Start a node (see :func:`start_node`), its process group watched by the reaper.

        A new node (no ports given) whose server exits at once, because another process
        took one of its free ports between their choice and the bind, is started again
        on new ports (three tries)."""
        for _ in range(3 if not (port or bus_port) else 1):
            node = start_node(name, self.workdir, port=port, bus_port=bus_port)
            self.reaper.watch(node.proc.pid)
            up = wait_for(lambda n=node: n.ping() or n.proc.poll() is not None, 30, f"{name}")
            if up and node.proc.poll() is None:
                return node
        return node

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def client(self) -> RedisCluster:
        """A cluster client of :attr:`url`, built by ``connect`` as production builds it."""
        return connect_cluster(self.url)

    def live(self) -> list[Node]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.running()]

    def owner_of_slot(self, slot: int) -> Node:
        """The live primary that says it serves ``slot``."""
        owner = self.owner_of_slot_or_none(slot)
        assert owner is not None, f"no live primary serves slot {slot}"
        return owner

    def owner_of_slot_or_none(self, slot: int) -> Node | None:
        """The live primary that says it serves ``slot`` (each node's own word: during a
        failover nobody may), None when there is none."""
        for node in self.live():
            view = node.view()
            if view is not None and view.is_primary and slot in view.slots:
                return node
        return None

    def primary_of(self, key: str | bytes) -> Node:
        """The live primary serving ``key``'s slot."""
        return self.owner_of_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def primaries(self) -> list[Node]:
        """The live nodes that are primaries with slots now."""
        return [n for n in self.live() if (v := n.view()) is not None and v.slots]

    def kill_primary_of(self, key: str | bytes) -> Node:
        """SIGKILL the primary serving ``key``'s slot; returns it (``killed_at`` set)."""
        victim = self.primary_of(key)
        victim.kill()
        return victim

    def wait_promoted(self, victim: Node, timeout_s: float = 20.0) -> float:
        """Wait until the killed ``victim``'s slots are served by another live primary and
        every live node says ``cluster_state:ok``; the seconds since the kill."""
        assert victim.killed_at is not None, f"{victim.name} was not killed"
        slot = next(iter(victim.slots_at_kill))

        def promoted() -> bool:
            owner = self.owner_of_slot_or_none(slot)
            return (
                owner is not None
                and owner is not victim
                and self.healthy(live_nodes=SHARDS * 2 - 1)
            )

        wait_for(promoted, timeout_s=timeout_s, what=f"a replica promoted for {victim.name}")
        return time.monotonic() - victim.killed_at

    def restart(self, node: Node, timeout_s: float = 20.0) -> Node:
        """Start a killed node again on its port with its ``nodes.conf``: it rejoins, finds
        its slots served by its former replica, and becomes that one's replica. Waits
        until the cluster is whole again (six nodes, no failure flags, replicas in sync)."""
        again = self.start(node.name, port=node.port, bus_port=node.bus_port)
        again.id = node.id
        self.nodes[self.nodes.index(node)] = again
        wait_for(self.whole, timeout_s=timeout_s, what=f"{node.name} back in the cluster")
        return again

    def healthy(self, live_nodes: int = SHARDS * 2) -> bool:
        """``live_nodes`` nodes run, and each says ``cluster_state:ok`` and knows all six
        (a dead node stays known, flagged failed)."""
        live = self.live()
        return len(live) == live_nodes and all(n.cluster_ok(known=SHARDS * 2) for n in live)

    def whole(self) -> bool:
        """Six live nodes agreeing: state ok, three primaries with a replica in sync each,
        no node flagged as failing by anyone."""
        if not self.healthy():
            return False
        views = [n.view() for n in self.nodes]
        if any(v is None or v.sees_failure for v in views):
            return False
        replicas = [n for n, v in zip(self.nodes, views, strict=True) if v and v.primary_id]
        return len(replicas) == SHARDS and all(n.in_sync() for n in replicas)

    def flush(self) -> None:
        """Empty every primary (their replicas follow)."""
        for node in self.primaries():
            node.client().flushall()

    def migrate_slot(
        self, slot: int, to_node: Node, between_chunks: Callable[[], object] | None = None
    ) -> SlotMigration:
        """Move ``slot`` and its keys to the primary ``to_node`` while clients may write,
        calling ``between_chunks`` (if given) after opening the slot and after every
        chunk of keys moved; the finished migration (how many keys it moved)."""
        migration = SlotMigration(cluster=self, slot=slot, target=to_node)
        migration.begin()
        while True:
            if between_chunks is not None:
                between_chunks()
            if not migration.move_chunk():
                break
        migration.finish()
        return migration


@dataclass
class SlotMigration:
    """One slot moved the standard way, a step at a time (a test may act between steps).

    :meth:`begin` marks the slot IMPORTING on the target, then MIGRATING on the source:
    from then on the source answers for the keys it still holds and sends the others to
    the target with ASK (a new key is created there). :meth:`move_chunk` moves up to
    :data:`MIGRATE_CHUNK` keys with one atomic ``MIGRATE ... KEYS``; :meth:`finish`
    gives the slot to the target, telling the target first (so it never refuses its own
    keys), then the source (which starts to answer MOVED), then the other primaries.
    """

    cluster: LocalCluster
    slot: int
    target: Node
    moved: int = 0
    source: Node = field(init=False)

    def begin(self) -> None:
        """Open the slot for migration."""
        self.source = self.cluster.owner_of_slot(self.slot)
        assert self.source is not self.target, f"slot {self.slot} is on {self.target.name}"
        self.target.client().cluster("SETSLOT", self.slot, "IMPORTING", self.source.id)
        self.source.client().cluster("SETSLOT", self.slot, "MIGRATING", self.target.id)

    def move_chunk(self) -> int:
        """Move the next keys of the slot; how many (0 once the source holds none)."""
        source = self.source.client()
        keys = source.cluster("GETKEYSINSLOT", self.slot, MIGRATE_CHUNK)
        if keys:
            source.execute_command(
                "MIGRATE", "127.0.0.1", self.target.port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *keys
            )
        self.moved += len(keys)
        return len(keys)

    def finish(self) -> None:
        """Give the slot to the target, everywhere."""
        # replicas refuse SETSLOT ("only with masters"): they learn it from their primary
        others = [n for n in self.cluster.primaries() if n not in (self.target, self.source)]
        for node in [self.target, self.source, *others]:
            node.client().cluster("SETSLOT", self.slot, "NODE", self.target.id)


def _build(cluster: LocalCluster, timeout_s: float) -> None:
    """Slots, introductions, replicas: ``valkey-cli --cluster create`` by hand."""
    primaries, replicas = cluster.nodes[:SHARDS], cluster.nodes[SHARDS:]
    for node in cluster.nodes:
        wait_for(node.ping, timeout_s=timeout_s, what=f"{node.name} up")
        node.id = node.client().cluster("MYID").decode()
    for epoch, (node, (first, last)) in enumerate(zip(primaries, _ranges(), strict=True), 1):
        client = node.client()
        client.cluster("ADDSLOTSRANGE", first, last)
        # distinct epochs at once, instead of a collision resolved over the bus
        client.cluster("SET-CONFIG-EPOCH", epoch)
    introducer = cluster.nodes[0].client()
    for node in cluster.nodes[1:]:
        introducer.cluster("MEET", "127.0.0.1", node.port, node.bus_port)
    wait_for(cluster.healthy, timeout_s=timeout_s, what="every node knows all six, state ok")
    for replica, primary in zip(replicas, primaries, strict=True):
        # a replica must know its primary as such before it can follow it
        wait_for(partial(replica.knows_primary, primary.id), timeout_s=timeout_s)
        replica.client().cluster("REPLICATE", primary.id)
    wait_for(cluster.whole, timeout_s=timeout_s, what="three replicas in sync, seen by all")


def _ranges() -> list[tuple[int, int]]:
    """The slots split in :data:`SHARDS` contiguous ranges, as even as they go."""
    bounds = [SLOTS * i // SHARDS for i in range(SHARDS + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(SHARDS)]


@contextmanager
def redis_cluster(timeout_s: float = 30.0) -> Iterator[LocalCluster]:
    """Start three primaries and three replicas as one cluster; end them all on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="rc"))
    cluster = LocalCluster(workdir, Reaper())
    cluster.reaper.remove(workdir)
    try:
        for i in range(SHARDS * 2):
            role = "primary" if i < SHARDS else "replica"
            cluster.nodes.append(cluster.start(f"{role}-{i % SHARDS}"))
        _build(cluster, timeout_s)
        yield cluster
    finally:
        for node in cluster.nodes:
            node.kill()
        cluster.reaper.close()
        shutil.rmtree(workdir, ignore_errors=True)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """The session's cluster, started once, every node SIGKILLed at the end."""
    with redis_cluster() as started:
        yield started


@pytest.fixture
def cluster_client(cluster: LocalCluster) -> Iterator[RedisCluster]:
    """A client of the session's cluster, whole again and emptied for this test."""
    wait_for(cluster.whole, timeout_s=20.0, what="the session's cluster whole")
    cluster.flush()
    client = cluster.client()
    yield client
    client.close()

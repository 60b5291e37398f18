"""Every use of an internal of redis-py or Dramatiq, behind one wall.

The package reaches past a library's documented API only here. Each name below says
which internal it relies on and the versions it was read in: the floors declared in
``pyproject.toml`` (redis-py 5.3, Dramatiq 2.0) and the newest releases (redis-py 8.2,
Dramatiq 2.2). ``tests/test_compat.py`` runs each against real servers, and
``scripts/test-versions.sh min|latest`` runs it on both ends: a release that moves an
internal fails there, by name, instead of deep inside a failover test.

This module imports nothing of the package, so that any module may import it.

Over ~250 lines on purpose: every internal of two libraries, in one place.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.crc import key_slot as _crc_key_slot
from redis.exceptions import SlotNotCoveredError
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection

# -- redis-py: hash slots ---------------------------------------------------------------

#: How many hash slots a Redis Cluster has (``redis.crc``, an undocumented module).
HASH_SLOTS: int = REDIS_CLUSTER_HASH_SLOTS


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key`` (hash tags honoured), computed locally.

    Relies on ``redis.crc.key_slot`` (undocumented; redis-py 5.3-8.2), which takes bytes.
    """
    return int(_crc_key_slot(key.encode() if isinstance(key, str) else key))


# -- redis-py: connections that look up their server on every connect -------------------


class ConnectionToMovingServer(redis.Connection):
    """A connection that asks :meth:`address` where to connect every time it connects.

    redis-py reads ``host`` and ``port`` when a connection is built, and a connection it
    reconnects (after an error, on a retry) goes back to the same address. Relies on
    ``Connection._connect()`` (private; redis-py 5.3-8.2): ``connect()`` calls it for every
    new socket, and it reads ``self.host``/``self.port`` then. With ``SSLConnection`` as a
    later base, its ``_connect`` wraps the socket as usual.
    """

    def address(self) -> tuple[str, int]:
        """Where the server is now."""
        raise NotImplementedError

    def unreachable(self) -> None:
        """Called when the address given could not be reached (the error is raised after)."""

    def _connect(self) -> Any:
        self.host, self.port = self.address()
        try:
            return super()._connect()  # type: ignore[no-untyped-call]
        except OSError:
            self.unreachable()
            raise


class SentinelFollowingConnection(SentinelManagedConnection):
    """A connection to the primary that asks the Sentinels where it is on every connect.

    redis-py's own asks only when a connection is first opened from the pool; a command
    it retries reconnects to the address it had (redis-py issue 3874), so a retry after
    a failover keeps knocking at the dead primary until its retries run out. Relies on
    ``Connection._connect()`` (private) and on the pool's ``is_master`` attribute and
    ``get_master_address()`` (undocumented; redis-py 5.3-8.2).
    """

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()  # type: ignore[no-untyped-call]


def sentinel_pool(client: redis.Redis) -> SentinelConnectionPool | None:
    """The Sentinel-managed pool of ``client``; None for any other client (a cluster
    client has no pool at all)."""
    pool = getattr(client, "connection_pool", None)
    return pool if isinstance(pool, SentinelConnectionPool) else None


def sentinel_service(pool: SentinelConnectionPool) -> str:
    """The service name the Sentinels monitor the primary under (``service_name``,
    an undocumented attribute; redis-py 5.3-8.2)."""
    return str(pool.service_name)


def sentinel_addresses(pool: SentinelConnectionPool) -> list[tuple[str, int]]:
    """Host and port of each Sentinel the pool asks (``sentinel_manager.sentinels``,
    undocumented attributes; redis-py 5.3-8.2)."""
    found = []
    for sentinel in pool.sentinel_manager.sentinels:
        kwargs = sentinel.connection_pool.connection_kwargs
        found.append((str(kwargs.get("host") or "localhost"), int(kwargs.get("port") or 26379)))
    return found


def last_primary(pool: SentinelConnectionPool) -> tuple[str, int] | None:
    """The primary's address as the pool last learned it from the Sentinels, None before
    the first connection (``master_address``, an undocumented attribute; redis-py 5.3-8.2)."""
    address = pool.master_address
    return None if address is None else (str(address[0]), int(address[1]))


def parse_redis_url(url: str) -> dict[str, Any]:
    """The connection settings ``redis.Redis.from_url`` would use for ``url`` (``host``,
    ``port``, ``db``, ``path``...); raises ``ValueError`` when it cannot read it.

    Relies on ``redis.connection.parse_url`` (undocumented; redis-py 5.3-8.2).
    """
    parsed: dict[str, Any] = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    return parsed


# -- redis-py: a cluster client's slot map and node clients ------------------------------


class CallRetryingCluster(RedisCluster):
    """A ``RedisCluster`` whose every command is run under ``call_retry`` as a whole.

    Relies on ``RedisCluster.execute_command`` being the one door of every command the
    client sends, its own constructor's included, and on its ``target_nodes`` keyword
    (redis-py 5.3-8.2). A command sent to nodes the caller named (node objects, not a
    flag such as ``RedisCluster.PRIMARIES``) is run once, as RedisCluster does: those
    nodes may be gone for good.
    """

    def __init__(self, *, call_retry: Retry, **kwargs: Any) -> None:
        self.call_retry = call_retry  # first: the constructor itself sends commands
        super().__init__(**kwargs)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        run = super().execute_command
        if not isinstance(kwargs.get("target_nodes", RedisCluster.PRIMARIES), str):
            return run(*args, **kwargs)  # type: ignore[no-untyped-call]
        return self.call_retry.call_with_retry(
            lambda: run(*args, **kwargs),  # type: ignore[no-untyped-call]
            _nothing_to_undo,
        )


def _nothing_to_undo(error: Exception) -> None:
    """Between two tries: RedisCluster has reloaded its slot map already."""


def cluster_node(host: str, port: int) -> ClusterNode:
    """A startup node for ``RedisCluster(startup_nodes=...)`` (its constructor is untyped)."""
    node: ClusterNode = ClusterNode(host, port)  # type: ignore[no-untyped-call]
    return node


def primary_of_slot(cluster: RedisCluster, slot: int) -> ClusterNode:
    """The primary that serves ``slot`` as the client last learned it; raises
    ``redis.exceptions.SlotNotCoveredError`` when it knows none.

    Relies on ``nodes_manager.get_node_from_slot`` (undocumented; redis-py 5.3-8.2).
    """
    node: ClusterNode = cluster.nodes_manager.get_node_from_slot(slot)
    return node


def primaries_of_slots(cluster: RedisCluster, slots: Sequence[int]) -> list[ClusterNode]:
    """The primary of each of ``slots`` as the client last learned it (one look at the
    map for all of them); raises ``redis.exceptions.SlotNotCoveredError`` for a slot it
    knows no node of.

    Relies on ``nodes_manager.slots_cache`` (undocumented; redis-py 5.3-8.2): slot ->
    its nodes, the primary first, the map :func:`primary_of_slot` reads one slot of.
    """
    cache = cluster.nodes_manager.slots_cache
    nodes = []
    for slot in slots:
        served = cache.get(slot)
        if not served:
            raise SlotNotCoveredError(f"slot {slot} is not covered by the cluster")
        nodes.append(served[0])
    return nodes


def reload_slot_map(cluster: RedisCluster) -> None:
    """Ask the cluster for its slot map now (raises when no node answers); the package
    calls it through ``store.cluster.Layout.refresh``, which spaces the asks out.

    Relies on ``nodes_manager.initialize()`` (undocumented; redis-py 5.3-8.2).
    """
    cluster.nodes_manager.initialize()


def node_client(cluster: RedisCluster, node: ClusterNode) -> redis.Redis:
    """The plain client of one node, with the cluster client's settings (a script and its
    ``WAIT`` sent on it run on that node only)."""
    client: redis.Redis = cluster.get_redis_connection(node)
    return client


def node_named(cluster: RedisCluster, name: str) -> ClusterNode | None:
    """The node called ``name`` (``host:port``) in the client's slot map; None when it
    knows no such node (any more)."""
    node: ClusterNode | None = cluster.get_node(node_name=name)  # type: ignore[no-untyped-call]
    return node


def node_settings(cluster: RedisCluster) -> dict[str, Any]:
    """The connection settings the cluster client gives every node client (password,
    TLS, timeouts...) but host and port.

    Relies on ``nodes_manager.connection_kwargs`` (undocumented; redis-py 5.3-8.2).
    """
    kwargs: dict[str, Any] = cluster.nodes_manager.connection_kwargs
    return {k: v for k, v in kwargs.items() if k not in ("host", "port")}


def startup_addresses(cluster: RedisCluster) -> list[tuple[str, int]]:
    """Host and port of each startup node of ``cluster``.

    Relies on ``nodes_manager.startup_nodes`` (undocumented; redis-py 5.3-8.2).
    """
    return [(str(n.host), int(n.port)) for n in cluster.nodes_manager.startup_nodes.values()]


# -- Dramatiq: the RedisBroker -------------------------------------------------------------

#: The Dramatiq namespace a ``RedisBroker`` uses unless told otherwise.
DEFAULT_NAMESPACE = "dramatiq"


def broker_client(broker: object) -> redis.Redis | None:
    """The Redis client of a ``RedisBroker`` (its ``client`` attribute, undocumented;
    Dramatiq 2.0-2.2); None for any other broker."""
    client = getattr(broker, "client", None)
    return client if isinstance(client, redis.Redis | RedisCluster) else None  # type: ignore[return-value]


def broker_namespace(broker: object) -> str:
    """The key prefix of a ``RedisBroker`` (``namespace``, undocumented; Dramatiq
    2.0-2.2), the default one for another broker."""
    return str(getattr(broker, "namespace", DEFAULT_NAMESPACE))


def set_heartbeat_timeout(broker: object, timeout_ms: int) -> None:
    """Make ``broker`` take a worker without a heartbeat for ``timeout_ms`` for dead
    (``RedisBroker.heartbeat_timeout``, read by every dispatch; Dramatiq 2.0-2.2)."""
    broker.heartbeat_timeout = timeout_ms  # type: ignore[attr-defined]


def run_maintenance(broker: object, *, queue: str, heartbeat_timeout_ms: int, command: str) -> None:
    """Run the broker's ``dispatch.lua`` for ``queue`` with maintenance forced on: it
    writes this broker's heartbeat and requeues the messages of workers silent for
    ``heartbeat_timeout_ms``. ``command`` should be one the script does not know, so
    that nothing else runs.

    Relies on ``RedisBroker.scripts["dispatch"]`` and its ARGV by position (command,
    timestamp, queue, worker id, heartbeat timeout, dead-message TTL, do-maintenance,
    max-unpack size), ``broker_id``, ``dead_message_ttl`` and ``_max_unpack_size()``
    (private; Dramatiq 2.0-2.2).
    """
    b: Any = broker
    args = [
        command,
        int(time.time() * 1000),
        queue,
        b.broker_id,
        heartbeat_timeout_ms,
        b.dead_message_ttl,
        1,  # maintenance: always
        b._max_unpack_size(),
    ]
    b.scripts["dispatch"](keys=[b.namespace], args=args)

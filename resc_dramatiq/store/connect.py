"""One way to say "this Redis": a URL into a client: a single server, through Sentinel,
or a Redis Cluster.

The URL forms :func:`connect` accepts::

    redis://[[user]:password@]host[:port][/db][?option=value...]     redis-py's from_url
    rediss://...                                                     the same over TLS
    unix://[[user]:password@]/path/to/socket[?db=n]
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?...]
    rediss+sentinel://...     TLS to the Sentinels and to the servers they name
    redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0][?db=0]
    rediss+cluster://...      TLS to every node of the cluster

In a Sentinel URL the hosts are the Sentinels (port 26379 when omitted), ``service`` the
name they monitor the primary under, the user and password those of the Redis servers;
``sentinel_username`` and ``sentinel_password`` in the query are the Sentinels' own
(none by default). The client always talks to the current primary: redis-py's
``SentinelConnectionPool`` asks the Sentinels for it on every new connection, and a
connection that meets a demoted primary (``READONLY``) is dropped and raises
``ConnectionError``. Such a client retries a command for about 16 s
(:data:`FAILOVER_RETRIES`), asking the Sentinels again each time, so most callers (a
Dramatiq broker, the commands) ride through a failover without seeing it; the callers
that retry by themselves (the router, the middleware) follow longer ones.

In a Cluster URL the hosts are startup nodes (port 6379 when omitted): any one that
answers tells the client the whole slot map. A cluster has only database 0. The client
is a :class:`FailoverRidingCluster`: redis-py's ``RedisCluster`` with pauses between its
retries, so a command meeting a shard failover waits for the replica's promotion (about
16 s at most, :data:`FAILOVER_RETRIES`) instead of failing at once. :func:`is_cluster`
tells such a client from the others.

Over ~250 lines on purpose: the three URL families share their options, TLS and
timeouts.
"""

from __future__ import annotations

from typing import Any, TypeGuard, cast
from urllib.parse import quote

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.connection import SSLConnection
from redis.exceptions import ClusterError, RedisClusterException, SlotNotCoveredError
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..compat import (
    CallRetryingCluster,
    SentinelFollowingConnection,
    cluster_node,
    node_settings,
    sentinel_addresses,
    sentinel_pool,
    sentinel_service,
    startup_addresses,
)
from ..errors import RedisURLError
from .masking import scrub
from .urls import (
    SentinelTarget,
    check_plain,
    is_cluster_url,
    is_sentinel,
    parse_cluster,
    parse_sentinel,
    safe_url,
)

#: What every client gets unless told otherwise: dead connections found promptly.
DEFAULTS: dict[str, Any] = {"health_check_interval": 10, "socket_keepalive": True}

#: How a Sentinel-backed or cluster client retries a command that met a failover (a
#: closed connection, a demoted primary, no primary yet): ~16 s of capped backoff, each
#: try asking the Sentinels for the primary, or a cluster node for the slot map.
#: (redis-py gives Sentinel clients no retries, cluster clients retries without pauses.)
FAILOVER_RETRIES = 20
FAILOVER_BACKOFF_CAP_S = 1.0

#: What a cluster client gets unless told otherwise. RedisCluster hands its nodes only the
#: connection options it knows (``redis.cluster.REDIS_ALLOWED_KEYS``) and drops the rest
#: without a word: ``health_check_interval`` is not among them. A dead connection is
#: found by the command that meets it instead, and that command is retried.
CLUSTER_DEFAULTS: dict[str, Any] = {"socket_keepalive": True}

#: How many times RedisCluster itself retries a command that met a connection error or
#: CLUSTERDOWN (each time reloading the slot map), inside each of our retries. Its loop
#: does not pause (but 0.25 s after CLUSTERDOWN), so these are spent in milliseconds
#: against a dead primary that refuses connections: the pauses are ours.
CLUSTER_INNER_RETRIES = 3

#: How long a Sentinel may take to answer "who is the primary?" before the next is asked.
SENTINEL_TIMEOUT_S = 1.0


class FollowingSSLConnection(SentinelFollowingConnection, SSLConnection):
    """:class:`~resc_dramatiq.compat.SentinelFollowingConnection` over TLS."""


class FailoverRidingCluster(CallRetryingCluster):
    """A ``RedisCluster`` whose commands ride through a shard failover.

    redis-py's sync RedisCluster retries a command that met ``ConnectionError``,
    ``TimeoutError``, ``ClusterDownError`` or ``SlotNotCoveredError``, reloading its slot
    map each time, but it uses only the count of its ``retry`` (redis-py 8: "not yet
    fully utilized"), never its backoff. While a killed primary's replica waits for the
    cluster to declare it failed (``cluster-node-timeout``) and wins its election, every
    node still names the dead primary: the ten default tries are spent in milliseconds
    and the caller gets ``ConnectionError``. Here each call is retried with a capped
    exponential backoff (:data:`FAILOVER_RETRIES`, about 16 s), the slot map reloaded
    before each try.

    MOVED and ASK RedisCluster follows by itself inside one try. TRYAGAIN (a command or
    script on several keys of a slot being migrated, some moved already, some not) it
    repeats for about 0.4 s only, then raises ``ClusterError("TTL exhausted.")``, the one
    place it raises a plain ``ClusterError``: retried here too, so such a command waits
    for the migration to end. Pipelines (``ClusterPipeline``) are not covered: they
    retry as redis-py does, and empty themselves even when they fail.
    """

    def __init__(self, **kwargs: Any) -> None:
        # A command that met a failover runs again after a pause (a write may then run
        # twice, as with any retried client); one sent to nodes named by the caller
        # does not (see CallRetryingCluster).
        failover_retry = Retry(
            ExponentialBackoff(cap=FAILOVER_BACKOFF_CAP_S, base=0.05),
            FAILOVER_RETRIES,
            supported_errors=(
                redis.ConnectionError,
                redis.TimeoutError,
                ClusterError,  # CLUSTERDOWN, and "TTL exhausted" (TRYAGAIN, see above)
                SlotNotCoveredError,
            ),
        )
        super().__init__(
            call_retry=failover_retry,
            retry=Retry(NoBackoff(), CLUSTER_INNER_RETRIES),
            **kwargs,
        )


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for the Redis ``url`` names (see the module docstring for the forms).

    ``options`` go to the client's connections (``socket_timeout``, ``decode_responses``,
    ``ssl_ca_certs``...), over the defaults in :data:`DEFAULTS`. For a Sentinel URL, the
    ``socket_*`` options also apply to the Sentinels. Raises :class:`RedisURLError`
    (naming the URL, password masked) when the URL cannot be read; connecting happens
    on first use, but for a cluster (see :func:`connect_cluster`).
    """
    if not (is_cluster_url(url) or is_sentinel(url)):
        check_plain(url)  # the scheme too, naming all of them
    if is_cluster_url(url):
        # Typed as the others: RedisCluster speaks the same commands, but the stores
        # of this library are written for one server (see is_cluster).
        return cast(redis.Redis, connect_cluster(url, **options))
    settings = {**DEFAULTS, **options}
    if is_sentinel(url):
        return _through_sentinel(parse_sentinel(url), settings)
    try:
        return redis.Redis.from_url(url, **settings)
    except ValueError as e:
        raise RedisURLError(f"invalid Redis URL {safe_url(url)}: {scrub(str(e), url)}") from None


def connect_cluster(url: str, **options: Any) -> FailoverRidingCluster:
    """The cluster client of a ``redis+cluster://`` URL (see :func:`connect`), typed as
    what it is.

    Unlike the other clients it connects at once: RedisCluster reads the slot map from
    the first startup node that answers in its constructor. Raises
    :class:`RedisURLError` when the URL cannot be read, ``redis.ConnectionError`` (URL
    masked) when no startup node answers.
    """
    target = parse_cluster(url)
    nodes = [cluster_node(host, port) for host, port in target.nodes]
    try:
        return FailoverRidingCluster(
            startup_nodes=nodes,
            # a shard without a primary for a moment (a failover) is no reason to refuse
            # the whole client: the commands for its slots wait, the others run
            require_full_coverage=False,
            **{**CLUSTER_DEFAULTS, **options},
            username=target.username,
            password=target.password,
            ssl=target.ssl,
        )
    except RedisClusterException as e:  # not a RedisError: callers catch those
        raise redis.ConnectionError(f"Redis Cluster at {safe_url(url)}: {e}") from None


def is_cluster(client: object) -> TypeGuard[RedisCluster]:
    """True when ``client`` talks to a Redis Cluster: its keys live on several servers,
    so a script or transaction may touch only keys of one hash slot. (A guard: the
    client :func:`connect` returns is typed ``redis.Redis`` whatever the URL.)"""
    return isinstance(client, RedisCluster)


def _through_sentinel(target: SentinelTarget, settings: dict[str, Any]) -> redis.Redis:
    sockets = {k: v for k, v in settings.items() if k.startswith("socket_")}
    sentinel_kwargs: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),  # a Sentinel that fails: ask the next one at once
        "socket_timeout": SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        **sockets,
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        "ssl": target.ssl,
    }
    server_kwargs = {
        "retry": Retry(ExponentialBackoff(cap=FAILOVER_BACKOFF_CAP_S, base=0.05), FAILOVER_RETRIES),
        **settings,
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "connection_class": FollowingSSLConnection if target.ssl else SentinelFollowingConnection,
    }
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    client: redis.Redis = sentinel.master_for(target.service, **server_kwargs)
    return client


def url_of(client: redis.Redis) -> str | None:
    """A Sentinel or Cluster URL naming what a Sentinel-backed or cluster client talks to
    (password masked by the caller); None for any other client."""
    if isinstance(client, RedisCluster):
        return _cluster_url_of(client)
    pool = sentinel_pool(client)
    if pool is None:
        return None
    hosts = [_host_port(host, port) for host, port in sentinel_addresses(pool)]
    kwargs = pool.connection_kwargs
    user, password = kwargs.get("username") or "", kwargs.get("password")
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    tls = issubclass(pool.connection_class, SSLConnection)
    scheme = "rediss+sentinel" if tls else "redis+sentinel"
    auth = f"{userinfo}@" if userinfo else ""
    service = sentinel_service(pool)
    return f"{scheme}://{auth}{','.join(hosts)}/{service}/{kwargs.get('db') or 0}"


def _cluster_url_of(client: RedisCluster) -> str:
    """The ``redis+cluster://`` URL of a cluster client's startup nodes."""
    kwargs = node_settings(client)
    user, password = kwargs.get("username") or "", kwargs.get("password")
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    auth = f"{userinfo}@" if userinfo else ""
    scheme = "rediss+cluster" if kwargs.get("ssl") else "redis+cluster"
    hosts = ",".join(_host_port(host, port) for host, port in startup_addresses(client))
    return f"{scheme}://{auth}{hosts}"


def _host_port(host: str, port: int) -> str:
    return f"{f'[{host}]' if ':' in host else host}:{port}"

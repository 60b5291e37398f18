"""Which Redis, and which Dramatiq namespace, a command talks to.

Each watcher's Redis, first found wins:

1. ``--redis-url`` (or ``RESC_REDIS_URL``);
2. a ``redis.url`` the config file gives (the watcher's, else the top-level one);
3. the Redis of ``--app``'s broker (its own client: TLS, credentials, timeouts);
4. the default, ``redis://127.0.0.1:6379/0``.

A file URL naming another server than the broker's (host, port, db) and an app whose
broker is no ``RedisBroker`` are said on stderr, once each. The namespace is the
config's when the file names one, else the broker's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import click
import redis
from dramatiq.brokers.redis import RedisBroker
from redis.connection import SSLConnection

from ..compat import broker_client, broker_namespace, parse_redis_url
from ..config.model import DEFAULT_REDIS_URL, Config
from ..errors import RedisURLError
from ..store.connect import url_of as multi_host_url_of
from ..store.slots import cluster_problems
from ..store.urls import is_cluster_url, is_sentinel, parse_sentinel
from ..worker.app import App
from .common import Loaded, connect, fail, safe_url


@dataclass(frozen=True, slots=True)
class Server:
    """A Redis to talk to: its URL (to group watchers by and to print, masked) and, for
    the app's broker, the broker's own client."""

    url: str
    client: redis.Redis | None = field(default=None, compare=False, repr=False)

    def connect(self) -> redis.Redis:
        """The broker's client, else a new one for ``url`` (exits 2 when malformed)."""
        return self.client if self.client is not None else connect(self.url)


def servers_for(loaded: Loaded, redis_url: str | None) -> list[Server]:
    """The Redis of each watcher of ``loaded.ruleset``, in order; warnings printed once.

    Exits 2 when a Redis Cluster among them cannot serve its watchers' key layout
    (every command refuses it alike, naming the keys and a hash tag).
    """
    broker = broker_server(loaded.app) if loaded.app is not None else None
    config = loaded.ruleset.config
    servers: list[Server] = []
    warnings: dict[str, None] = {}
    for i in range(len(loaded.ruleset.watchers)):
        server, warning = _choose(config, i, redis_url, loaded.app, broker)
        servers.append(server)
        if warning is not None:
            warnings[warning] = None
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    _refuse_unservable(loaded, servers)
    return servers


def _choose(
    config: Config, index: int, redis_url: str | None, app: App | None, broker: Server | None
) -> tuple[Server, str | None]:
    if redis_url is not None:
        return Server(redis_url), None
    named = file_url(config, index)
    if named is not None:
        path, url = named
        return Server(url), _conflict(config.locate(path), url, app, broker)
    if broker is not None:
        return broker, None
    if app is None:
        return Server(DEFAULT_REDIS_URL), None
    kind = type(app.broker).__name__
    return Server(DEFAULT_REDIS_URL), (
        f"--app {app.spec}: its broker is a {kind}, not a RedisBroker; "
        f"using {DEFAULT_REDIS_URL} (give --redis-url or a redis.url in CONFIG)"
    )


def file_url(config: Config, index: int) -> tuple[str, str] | None:
    """(path, url) of the ``redis.url`` the file gives watcher ``index``, if it gives one."""
    watcher = config.spec.watchers[index]
    for path, settings in (
        (f"watchers[{index}].redis", watcher.redis),
        ("redis", config.spec.redis),
    ):
        if settings is not None and "url" in settings.model_fields_set:
            return f"{path}.url", settings.url
    return None


def _conflict(where: str, url: str, app: App | None, broker: Server | None) -> str | None:
    if app is None or broker is None or address(url) == address(broker.url):
        return None
    return (
        f"{where}: {safe_url(url)} differs from the Redis of --app {app.spec} "
        f"({safe_url(broker.url)}); using {safe_url(url)} from the config"
    )


def broker_server(app: App) -> Server | None:
    """The Redis of the app's broker, None when it is no ``RedisBroker``."""
    client = broker_client(app.broker) if isinstance(app.broker, RedisBroker) else None
    if client is None:
        return None
    url = multi_host_url_of(client)  # a Sentinel or Cluster URL, when it is one
    if url is None:
        pool = client.connection_pool
        url = _url_of(pool.connection_kwargs, pool.connection_class)
    return Server(url, client)


def _url_of(kwargs: Mapping[str, Any], connection_class: type) -> str:
    """A URL naming the same server as a connection pool's settings (for messages)."""
    user, password = kwargs.get("username") or "", kwargs.get("password")
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    auth = f"{userinfo}@" if userinfo else ""
    db = kwargs.get("db") or 0
    if kwargs.get("path"):
        return f"unix://{auth}{kwargs['path']}?db={db}"
    scheme = "rediss" if issubclass(connection_class, SSLConnection) else "redis"
    host = str(kwargs.get("host") or "localhost")
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{auth}{host}:{kwargs.get('port') or 6379}/{db}"


def address(url: str) -> tuple[str, int, int] | None:
    """(host or socket path, port, db) of a Redis URL; None when it cannot be read.

    For a Sentinel URL: (its Sentinels and service, 0, db).
    """
    if is_sentinel(url):
        try:
            target = parse_sentinel(url)
        except RedisURLError:
            return None
        sentinels = ",".join(sorted(f"{h}:{p}" for h, p in target.sentinels))
        return f"{sentinels}/{target.service}", 0, target.db
    try:  # redis-py's own parser: the address from_url would connect to
        parts = parse_redis_url(url)
    except ValueError:
        return None
    where = parts.get("path") or parts.get("host") or "localhost"
    return str(where), int(parts.get("port") or 6379), int(parts.get("db") or 0)


def namespace_for(loaded: Loaded) -> str | None:
    """The Dramatiq namespace: the file's when it names one, else the app broker's.

    None (no file namespace, no Redis broker) leaves it to the config's default.
    """
    spec = loaded.ruleset.config.spec
    app = loaded.app
    redis_broker = app is not None and isinstance(app.broker, RedisBroker)
    own = broker_namespace(app.broker) if app is not None and redis_broker else None
    if "namespace" not in spec.model_fields_set:
        return own if isinstance(own, str) else None
    if app is not None and own is not None and own != spec.namespace:
        click.echo(
            f"warning: {loaded.ruleset.config.locate('namespace')}: namespace {spec.namespace!r}"
            f" differs from that of --app {app.spec} ({own!r}); using {spec.namespace!r}"
            " from the config",
            err=True,
        )
    return spec.namespace


def _refuse_unservable(loaded: Loaded, servers: list[Server]) -> None:
    """Exit 2 naming what the Redis Clusters among ``servers`` cannot serve of their
    watchers' rules (nothing to check without a cluster)."""
    ruleset = loaded.ruleset
    on_cluster = tuple(
        w for w, s in zip(ruleset.watchers, servers, strict=True) if is_cluster_url(s.url)
    )
    if not on_cluster:
        return
    part = dataclasses.replace(ruleset, watchers=on_cluster)
    problems = cluster_problems(part, namespace_for(loaded) or ruleset.config.spec.namespace)
    if problems:
        fail("a Redis Cluster cannot serve these rules:\n  " + "\n  ".join(problems))

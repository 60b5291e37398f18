"""A watcher's client on a Redis Cluster: every connection goes to the primary of one slot.

On a cluster each watcher's keys share one hash slot (see :mod:`.slots`), so the whole
of its store (the pipelined take and commit on connections of their own, heartbeats,
reclaims) runs unchanged on a plain ``redis.Redis`` whose connections are opened to
the node that serves that slot now. :func:`slot_client` builds it from the
``RedisCluster`` client :func:`~.connect.connect` gives for a ``redis+cluster://`` URL.

A reply that says the slot is elsewhere (``MOVED``: a failover or a finished migration;
``ASK``/``TRYAGAIN``: a migration under way) or a node that cannot be reached makes the
connection learn the cluster's layout again before it reconnects. The error still
reaches the caller, which treats it as transient (see
:func:`~.resilience.is_transient`): the router's loop waits with backoff and retries,
which is safe because its takes move nothing when refused and its commits are
recognised when repeated.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.connection import SSLConnection

from ..compat import ConnectionToMovingServer, node_settings, primary_of_slot, reload_slot_map
from .slots import key_slot

logger = logging.getLogger(__name__)

#: Errors that mean "this slot is served elsewhere, or not yet": learn the layout again.
SLOT_ERRORS = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


class KeyNotLocal(redis.exceptions.TryAgainError):
    """A script met a key its node does not serve (now): a slot of an outbox entry's
    part migrated, or failed over, since the layout was learned. Nothing was written
    (the keys are checked before any write); learn the layout again and retry."""


#: How a server says that a script met a key of a slot it does not serve.
NOT_LOCAL = "non local key"

#: Least time between two refreshes of a cluster's layout, in seconds (many connections
#: meeting the same failover ask once).
REFRESH_INTERVAL_S = 0.2


class Layout:
    """The slot -> node map of one ``RedisCluster`` client, refreshed when it went stale.

    It holds its client weakly (the registry of :func:`layout_of` is keyed by the client
    and must not keep it alive); a :class:`SlotConnection` holds both.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = weakref.ref(cluster)
        self._lock = threading.Lock()
        self._refreshed_at = 0.0

    @property
    def cluster(self) -> RedisCluster:
        """The client whose map this is."""
        cluster = self._cluster()
        if cluster is None:  # only a caller that kept a Layout but not its client
            raise ReferenceError("the cluster client of this layout is gone")
        return cluster

    def address(self, slot: int) -> tuple[str, int]:
        """Host and port of the primary that serves ``slot``, as last learned."""
        try:
            node = primary_of_slot(self.cluster, slot)
        except redis.exceptions.SlotNotCoveredError:
            self.refresh()
            node = primary_of_slot(self.cluster, slot)
        return node.host, int(node.port)

    def refresh(self) -> None:
        """Ask the cluster for its layout again (at most once per interval).

        A cluster in the middle of a failover may not answer: the layout stays as it was
        (asked again at the next error) and the error that made the caller ask is the
        one it sees, not a second one chained to it.
        """
        with self._lock:
            if time.monotonic() - self._refreshed_at < REFRESH_INTERVAL_S:
                return
            self._refreshed_at = time.monotonic()
            try:
                reload_slot_map(self.cluster)
            except Exception:  # any failure here means "not now"
                logger.debug("the cluster's layout could not be learned now", exc_info=True)


class SlotConnection(ConnectionToMovingServer):
    """A connection to whichever primary serves one slot, learned on every connect."""

    def __init__(self, *, cluster: RedisCluster, slot: int, **kwargs: Any) -> None:
        self.cluster, self.layout, self.slot = cluster, layout_of(cluster), slot
        host, port = self.layout.address(slot)
        super().__init__(host=host, port=port, **kwargs)  # type: ignore[no-untyped-call]

    def address(self) -> tuple[str, int]:
        """The primary of the slot, as last learned."""
        return self.layout.address(self.slot)

    def unreachable(self) -> None:
        """The node is gone: learn who serves the slot now."""
        self.layout.refresh()

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; one that says the slot moved makes the next connect look again."""
        try:
            return super().read_response(*args, **kwargs)
        except SLOT_ERRORS:
            self.disconnect()  # type: ignore[no-untyped-call]
            self.layout.refresh()
            raise


class SlotSSLConnection(SlotConnection, SSLConnection):
    """:class:`SlotConnection` over TLS."""


_layouts_lock = threading.Lock()
#: Each cluster client's layout, kept beside the client (nothing set on redis-py's
#: object) and gone with it.
_layouts: weakref.WeakKeyDictionary[RedisCluster, Layout] = weakref.WeakKeyDictionary()


def layout_of(cluster: RedisCluster) -> Layout:
    """The one :class:`Layout` of a cluster client: every part of the package that meets
    a moved slot or a dead node asks it to learn the layout again, at most once per
    :data:`REFRESH_INTERVAL_S` however many met it at once."""
    with _layouts_lock:
        layout = _layouts.get(cluster)
        if layout is None:
            layout = _layouts[cluster] = Layout(cluster)
        return layout


def slot_client(cluster: RedisCluster, key: str) -> redis.Redis:
    """A client of the primary that serves ``key``'s slot, following it when it moves."""
    layout = layout_of(cluster)
    host, port = layout.address(key_slot(key))
    # a node client as the cluster client builds them gives the connection settings
    template = redis.Redis(host=host, port=port, **node_settings(cluster))
    settings = dict(template.connection_pool.connection_kwargs)
    for name in ("host", "port"):
        settings.pop(name, None)
    ssl = issubclass(template.connection_pool.connection_class, SSLConnection)
    pool = redis.ConnectionPool(
        connection_class=SlotSSLConnection if ssl else SlotConnection,
        cluster=cluster,
        slot=key_slot(key),
        **settings,
    )
    template.close()
    return redis.Redis(connection_pool=pool)

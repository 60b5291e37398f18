"""The router's live notifications (resc's ``listener_channel``), and following them.

The commit script publishes, exactly as resc does, ``<taken queue> TRIGGER <event> ->
<task>`` for every task queued and ``<taken queue> DONE <event>`` for every event
finished. :func:`follow` subscribes and yields them, reconnecting after an outage.

On a Redis Cluster a ``PUBLISH`` reaches the subscribers of every node, so one
subscription anywhere hears every router; redis-py subscribes on the node its slot map
names for the channel's slot. Only commands refresh that map, never pub/sub: after a
failure the map is read again before subscribing anew, or a subscription would knock at
a failed-over primary forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from ..store.cluster import layout_of
from ..store.connect import is_cluster
from ..store.keyspace import text
from ..store.resilience import Availability, Backoff, PrimaryWatch, is_transient

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notification:
    """One published line, byte for byte."""

    raw: bytes

    def as_dict(self) -> dict[str, Any]:
        """``{"watcher", "kind", "event", "task"}`` (task None for DONE; kind None when
        the line is not one of the router's)."""
        line = text(self.raw)
        for kind in ("TRIGGER", "DONE"):
            watcher, sep, rest = line.partition(f" {kind} ")
            if sep:
                event, _, task = rest.partition(" -> ") if kind == "TRIGGER" else (rest, "", "")
                return {"watcher": watcher, "kind": kind, "event": event, "task": task or None}
        return {"watcher": None, "kind": None, "event": line, "task": None}


def follow(
    client: redis.Redis, channel: str, stop: threading.Event, *, what: str = "Redis"
) -> Iterator[Notification]:
    """Yield the notifications of ``channel`` until ``stop`` is set; survive outages.

    Lines published while the connection is down are lost (pub/sub keeps nothing):
    the outage is logged once, and again when following resumes. Through Sentinel, a
    failover is such an outage: the subscription is made again on the new primary
    (and the new address logged once).
    """
    availability = Availability(logger, f"listen on {what}")
    primary = PrimaryWatch(logger, f"listen on {what}", client)
    backoff = Backoff(first_s=0.1, cap_s=5.0)
    while not stop.is_set():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            if backoff.failures:
                _learn_nodes_again(client)
            pubsub.subscribe(channel)
            availability.succeeded()
            primary.check()
            backoff.reset()
            while not stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                primary.check()  # redis-py may have subscribed again by itself
                if message is not None and message["type"] == "message":
                    data = message["data"]
                    yield Notification(data if isinstance(data, bytes) else data.encode())
        except Exception as e:
            if not is_transient(e):
                raise
            availability.failed(e)
            backoff.wait(stop)
        finally:
            pubsub.close()


def _learn_nodes_again(client: redis.Redis) -> None:
    """On a cluster, ask the nodes again which of them serves which slot."""
    if not is_cluster(client):
        return
    try:
        layout_of(client).refresh()
    except RedisClusterException as e:  # no node answered: an outage as any other
        raise redis.ConnectionError(f"no cluster node answered: {e}") from None

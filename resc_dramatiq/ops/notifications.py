"""The router's live notifications (resc's ``listener_channel``), and following them.

The commit script publishes, exactly as resc does, ``<taken queue> TRIGGER <event> ->
<task>`` for every task queued and ``<taken queue> DONE <event>`` for every event
finished. :func:`follow` subscribes and yields them, reconnecting after an outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

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
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
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

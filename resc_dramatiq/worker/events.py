"""Writing one message's done or failure event onto its list, once per message.

The event, the message's marker in the list's markers and the dedup release (when due)
are written by one script (``emit.lua``): a retry after a lost reply, or the same message
redelivered after its worker died between the write and the ack, finds the marker and
writes nothing. On a Redis Cluster, a dedup set in another slot than the list is released
just before, on its own (one script may touch one slot only); the list and its markers
share a slot, which the worker's boot made sure of (see :mod:`.done_lists`).
"""

from __future__ import annotations

import dataclasses
import logging

from ..errors import RescError
from ..store.commit import DoneMessage
from ..store.connect import is_cluster
from ..store.events import emit
from ..store.resilience import Replication, ReplicaWait
from ..store.scripts import Scripts
from ..store.slots import key_slot
from .retrying import Retrying


class EventWriter:
    """Writes events and dedup releases through ``scripts``, retried by ``retrying``;
    what cannot be written is logged as ``LOST:``."""

    def __init__(
        self,
        *,
        scripts: Scripts,
        retrying: Retrying,
        logger: logging.Logger,
        marker_ttl_ms: int,
        wait: ReplicaWait | None = None,
        replication: Replication | None = None,
    ) -> None:
        self.scripts = scripts
        self.retrying = retrying
        self.logger = logger
        self.marker_ttl_ms = marker_ttl_ms
        self.wait = wait
        self.replication = replication

    def release(self, dedup: str, event: str) -> None:
        """Remove ``event`` from the dedup set ``dedup`` (idempotent: a ``ZREM``)."""
        client = self.scripts.client
        self.retrying.run(f"release of {event!r} from {dedup!r}", lambda: client.zrem(dedup, event))

    def apart(self, record: DoneMessage) -> DoneMessage:
        """``record`` as one script can write it: on a Redis Cluster, a dedup set in
        another slot than the list's markers is released now, on its own, and left out
        (one script touches one slot). Both the inline commit and :meth:`emit` take it."""
        released = record.release_set
        if (
            released is None
            or not is_cluster(self.scripts.client)
            or key_slot(released) == key_slot(record.markers)
        ):
            return record
        self.release(released, record.event)
        return dataclasses.replace(record, release_set=None)

    def emit(self, record: DoneMessage, what: str) -> None:
        """Push ``record``'s event onto its list once per message, released if due;
        ``what`` names it in the log (``done event``, ``failure event``)."""
        record = self.apart(record)
        event, queue, released = record.event, record.done_queue, record.release_set

        def write() -> bool:
            return emit(
                self.scripts,
                markers=record.markers,
                queue=queue,
                event=event,
                message_id=record.message_id,
                release_set=released,
                marker_ttl_ms=self.marker_ttl_ms,
                element=record.envelope,
                wait=self.wait,
                replication=self.replication,
            )

        try:
            self.retrying.run(f"{what} {event!r} for {queue!r}", write)
        except RescError as e:
            self.logger.critical("LOST: %s %r for %r: %s", what, event, queue, e)

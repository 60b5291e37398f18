"""A Dramatiq message's done or failure event, written once per message (``emit.lua``).

The worker's :class:`~resc_dramatiq.worker.events.EventWriter` calls :func:`emit` when a
message ends; the message's id goes into the list's markers in the same step, so a
retry after a lost reply, or the message redelivered after its worker was killed,
writes nothing more.
"""

from __future__ import annotations

from .resilience import Replication, ReplicaWait
from .scripts import Scripts, refusal, wrong_type


def emit(
    scripts: Scripts,
    *,
    markers: str,
    queue: str,
    event: str,
    message_id: str,
    release_set: str | None,
    marker_ttl_ms: int,
    wait: ReplicaWait | None = None,
    replication: Replication | None = None,
    element: bytes | None = None,
) -> bool:
    """Push a message's done or failure ``event`` onto ``queue``, once per message
    (``element``: what is pushed instead, the event's envelope; ``event`` is what the
    dedup set releases).

    Returns False when this message's event was written before (nothing written now).
    Raises :class:`~resc_dramatiq.errors.WrongType` (nothing written) when a key
    holds another type. With ``wait``, a ``WAIT`` follows on the same connection; the
    number of replicas that acknowledged goes to ``replication``.
    """
    keys = [markers, queue, release_set or markers]
    pushed = element if element is not None else event
    args = [pushed, message_id, marker_ttl_ms, "1" if release_set else "0", event]
    sent = scripts["emit"].send(keys, args, wait)
    reply = sent.replies()[0]
    if replication is not None and sent.acks is not None:
        replication.acked(sent.acks)
    refused = refusal(reply, keys)
    if refused is not None:
        raise wrong_type(refused, "nothing was written")
    return bool(reply[0] == 1)

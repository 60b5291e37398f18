"""Dramatiq's own dead-lettered messages of a queue: read them, enqueue them again, or drop them.

Dramatiq's Redis broker nacks a message that failed for good into ``ns:q.XQ`` (a sorted
set of Redis message ids scored by the time, ms) with its payload in ``ns:q.XQ.msgs``;
messages of the delay queue ``q.DQ`` die there too. :func:`list_dead_messages` reads a
page, newest first; :func:`requeue_messages` and :func:`drop_messages` move messages with
``xq.lua``, one atomic step per message (sent a small group per call): a message is
enqueued (``HSET ns:q.msgs``, ``RPUSH ns:q``, as Dramatiq enqueues) only when that step
removed it from the dead set. Several operators can therefore neither lose a message
nor enqueue it twice. A payload whose ``queue_name`` is not ``q`` (one from the delay
queue, or one that cannot be read) is not requeued: it is counted as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import redis

from ..store.keys import DramatiqKeys
from ..store.keyspace import text
from ..store.scripts import Scripts, refusal, wrong_type
from .dead import ALL

__all__ = [
    "ALL",
    "DeadMessage",
    "DeadMessagePage",
    "Moved",
    "drop_messages",
    "list_dead_messages",
    "requeue_messages",
]

#: Ids read and sent per call of ``xq.lua`` (each moved atomically on its own).
GROUP = 100


@dataclass(frozen=True, slots=True)
class DeadMessage:
    """One dead-lettered Dramatiq message."""

    redis_id: str  # its id in the dead set: what requeue and drop address
    actor: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    message_id: str
    queue_name: str  # the payload's own; a requeue needs it to be the queue's
    dead_at_ms: int  # when it was dead-lettered (Redis clock of the worker's call)
    error: str | None  # last line of the ``traceback`` option Retries may record
    payload: bytes | None  # exactly as stored; None when the payload is missing


@dataclass(frozen=True, slots=True)
class DeadMessagePage:
    """A page of dead messages, newest first."""

    messages: tuple[DeadMessage, ...]
    size: int  # messages in the dead set when it was read
    next_offset: int | None  # where the next page starts; None: the end was reached


@dataclass(frozen=True, slots=True)
class Moved:
    """What a requeue or drop did (dry run: would do)."""

    moved: int
    skipped: int  # requeue only: payloads of another queue (or unreadable), left dead


def parse(redis_id: bytes | str, score: float, payload: bytes | str | None) -> DeadMessage:
    """Read one dead message; a payload that is not Dramatiq's JSON leaves the fields empty."""
    raw = payload.encode() if isinstance(payload, str) else payload
    data: Any = None
    if raw is not None:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        data = {}
    options = data.get("options")
    traceback = options.get("traceback") if isinstance(options, dict) else None
    lines = traceback.strip().splitlines() if isinstance(traceback, str) else []
    args, kwargs = data.get("args"), data.get("kwargs")
    return DeadMessage(
        redis_id=text(redis_id),
        actor=str(data.get("actor_name", "")),
        args=tuple(args) if isinstance(args, list) else (),
        kwargs=kwargs if isinstance(kwargs, dict) else {},
        message_id=str(data.get("message_id", "")),
        queue_name=str(data.get("queue_name", "")),
        dead_at_ms=int(score),
        error=lines[-1] if lines else None,
        payload=raw,
    )


def list_dead_messages(
    client: redis.Redis, namespace: str, queue: str, *, offset: int = 0, limit: int = 50
) -> DeadMessagePage:
    """At most ``limit`` dead messages of ``queue`` from position ``offset``, newest first."""
    keys = DramatiqKeys(namespace)
    dead = keys.dead(queue)
    size = int(client.zcard(dead))
    found: list[Any] = client.zrevrange(dead, offset, offset + limit - 1, withscores=True)
    payloads = client.hmget(keys.dead_messages(queue), [i for i, _ in found]) if found else []
    messages = tuple(parse(i, s, p) for (i, s), p in zip(found, payloads, strict=True))
    end = offset + len(messages)
    return DeadMessagePage(messages, size, end if messages and end < size else None)


def requeue_messages(
    client: redis.Redis,
    namespace: str,
    queue: str,
    ids: Iterable[str | DeadMessage] | Literal["all"],
    *,
    dry_run: bool = False,
) -> Moved:
    """Enqueue the messages ``ids`` (or every one) on ``queue`` again, off the dead set.

    A worker runs them as new deliveries; the payload is kept as it was, so ``Retries``
    goes on counting from its ``retries`` option. Returns what was moved and skipped.
    """
    return _move(client, DramatiqKeys(namespace), queue, "requeue", ids, dry_run)


def drop_messages(
    client: redis.Redis,
    namespace: str,
    queue: str,
    ids: Iterable[str | DeadMessage] | Literal["all"],
    *,
    dry_run: bool = False,
) -> Moved:
    """Remove the dead messages ``ids`` (or every one) and their payloads for good."""
    return _move(client, DramatiqKeys(namespace), queue, "drop", ids, dry_run)


def _move(
    client: redis.Redis,
    keys: DramatiqKeys,
    queue: str,
    action: str,
    ids: Iterable[str | DeadMessage] | Literal["all"],
    dry_run: bool,
) -> Moved:
    script = Scripts(client)["xq"]
    script_keys = [keys.dead(queue), keys.dead_messages(queue), keys.queue(queue)]
    script_keys.append(keys.messages(queue))

    def send(group: list[str]) -> Moved:
        reply = script(keys=script_keys, args=[action, "1" if dry_run else "0", queue, *group])
        refused = refusal(reply, script_keys)
        if refused is not None:
            raise wrong_type(refused, "nothing was moved")
        return Moved(int(reply[0]), int(reply[1]))

    if ids == ALL:
        return _everything(client, script_keys[0], send, dry_run)
    moved = skipped = 0
    for group in _chunks(i.redis_id if isinstance(i, DeadMessage) else i for i in ids):
        done = send(group)
        moved, skipped = moved + done.moved, skipped + done.skipped
    return Moved(moved, skipped)


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    group: list[str] = []
    for i in ids:
        group.append(i)
        if len(group) == GROUP:
            yield group
            group = []
    if group:
        yield group


def _everything(
    client: redis.Redis, dead: str, send: Callable[[list[str]], Moved], dry_run: bool
) -> Moved:
    """Every id, oldest first, in groups; at most the set's size at the start.

    The moved ones leave the set (as do any another operator moved meanwhile), so each
    read starts after those still there: the skipped ones, every one in a dry run.
    Messages dead-lettered anew meanwhile are newer, at the end: left for the next call,
    so a requeue of all ends even while the messages keep failing.
    """
    left = int(client.zcard(dead))
    position = moved = skipped = 0
    while left > 0:
        read: list[Any] = client.zrange(dead, position, position + min(GROUP, left) - 1)
        group = [text(i) for i in read]
        if not group:
            break
        left -= len(group)
        done = send(group)
        moved, skipped = moved + done.moved, skipped + done.skipped
        position += len(group) if dry_run else done.skipped
    return Moved(moved, skipped)

"""Dramatiq messages built exactly as Dramatiq's Redis broker writes them.

The payload has ``queue_name, actor_name, args, kwargs, options, message_id,
message_timestamp``; ``options.redis_message_id`` is a fresh id distinct from
``message_id``. Delayed messages go to ``<queue>.DQ`` with ``options.eta`` in epoch ms.
Payloads are encoded with Dramatiq's global encoder, so custom encoders keep working.
The ``resc`` option tells the completion middleware which task this message is,
which dedup set holds it and where its done event goes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq

from .rules import Task, actor_args, actor_kwargs

#: Message option read by :class:`resc_dramatiq.middleware.Completion`.
RESC_OPTION = "resc"


def delay_queue_name(queue: str) -> str:
    """Dramatiq's name for the delay queue of ``queue``."""
    return f"{queue}.DQ"


def new_id() -> str:
    """A fresh random UUID4 string (generated in Python: Lua randomness is not random).

    Thread-safe: routers run one thread per Redis server and workers route in theirs.
    """
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message ready to push: the Redis queue name, its Redis id and its payload."""

    queue_name: str
    redis_message_id: str
    payload: bytes


def build_message(task: Task, *, now_ms: int, done_queue: str | None) -> Envelope:
    """The Dramatiq message of an actor task, encoded."""
    target = task.make.target
    assert target.actor is not None
    redis_message_id = new_id()
    options: dict[str, Any] = dict(target.options)
    options["redis_message_id"] = redis_message_id
    options[RESC_OPTION] = {
        "task": task.task,
        "set": task.set,
        "release": target.release,
        "done": done_queue,
    }
    queue_name = task.queue
    if target.delay_ms is not None:
        queue_name = delay_queue_name(queue_name)
        options["eta"] = now_ms + target.delay_ms
    message = {
        "queue_name": queue_name,
        "actor_name": target.actor,
        "args": actor_args(task),
        "kwargs": actor_kwargs(task),
        "options": options,
        "message_id": new_id(),
        "message_timestamp": now_ms,
    }
    return Envelope(queue_name, redis_message_id, dramatiq.get_encoder().encode(message))

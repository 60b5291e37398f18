"""Dramatiq messages built exactly as Dramatiq's Redis broker writes them.

The payload has ``queue_name, actor_name, args, kwargs, options, message_id,
message_timestamp``; ``options.redis_message_id`` is a fresh id distinct from
``message_id``. Delayed messages go to ``<queue>.DQ`` with ``options.eta`` in epoch ms.
Payloads are encoded with Dramatiq's global encoder, so custom encoders keep working.
The ``resc`` option tells the completion middleware which task this message is,
which dedup set holds it and where its done event goes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import dramatiq

from .model import Task
from .templates import Template

#: Message option read by :class:`resc_dramatiq.middleware.Completion`.
RESC_OPTION = "resc"


def delay_queue_name(queue: str) -> str:
    """Dramatiq's name for the delay queue of ``queue``."""
    return f"{queue}.DQ"


def _uuid_strings() -> Iterator[str]:
    """Random UUID4 strings, made from one ``os.urandom`` call per 256 ids."""
    while True:
        pool = bytearray(os.urandom(16 * 256))
        for i in range(0, len(pool), 16):
            pool[i + 6] = (pool[i + 6] & 0x0F) | 0x40
            pool[i + 8] = (pool[i + 8] & 0x3F) | 0x80
            h = pool[i : i + 16].hex()
            yield f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_local = threading.local()


def new_id() -> str:
    """A fresh random UUID4 string (generated in Python: Lua randomness is not random).

    Thread-safe (one generator per thread: routers run one thread per watcher and
    workers route in theirs), and about four times faster than ``str(uuid.uuid4())``.
    """
    ids: Iterator[str] | None = getattr(_local, "ids", None)
    if ids is None:
        ids = _local.ids = _uuid_strings()
    return next(ids)


def _json_encoder() -> Callable[[Any], str]:
    """Dramatiq's default encoding (``json.dumps`` with compact separators), built once.

    ``JSONEncoder.encode`` builds its C encoder anew for every call; this builds it once
    (a third of the time per message). Falls back to ``encode`` where the C
    accelerator is missing or writes other text than ``json.dumps``.
    """
    encoder = json.JSONEncoder(separators=(",", ":"))
    if c_make_encoder is None:
        return encoder.encode
    iterencode = c_make_encoder(
        None, encoder.default, encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(value: Any) -> str:
        return "".join(iterencode(value, 0))

    sample = {"a": [1, 2.5, 1e300, None, True, 'é\n"${x}'], "b": {"c": -0.0}}
    return encode if encode(sample) == encoder.encode(sample) else encoder.encode


_encode_json = _json_encoder()


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as the broker's encoder writes it (byte for byte for the default one)."""
    encoder = dramatiq.get_encoder()
    if type(encoder) is dramatiq.JSONEncoder:
        return _encode_json(message).encode("utf-8")
    return encoder.encode(message)


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
    return Envelope(queue_name, redis_message_id, encode(message))


def render_value(value: Any, variables: Mapping[str, str]) -> Any:
    """Fill a compiled args/kwargs value, at any depth; other JSON values pass through."""
    if isinstance(value, Template):
        return value.render(variables)
    if isinstance(value, tuple):
        return [render_value(v, variables) for v in value]
    if isinstance(value, Mapping):
        return {k: render_value(v, variables) for k, v in value.items()}
    return value


def actor_kwargs(task: Task) -> dict[str, Any]:
    """The kwargs of an actor target: its templates, else the rule's named groups."""
    target = task.make.target
    if target.kwargs is not None:
        return {k: render_value(v, task.variables) for k, v in target.kwargs.items()}
    if target.args is not None:
        return {}
    return {k: v for k, v in task.variables.items() if k != "input_task" and "." not in k}


def actor_args(task: Task) -> list[Any]:
    """The positional args of an actor target (empty unless ``args`` is given)."""
    return [render_value(v, task.variables) for v in task.make.target.args or ()]

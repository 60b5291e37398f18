"""What a pipeline still has to do, read from Redis: the harness's idle check.

Work is always visible in Redis while a pipeline runs: a Dramatiq message is in its
queue (``<ns>:<q>``), its delay queue (``<ns>:<q>.DQ``) or a worker's acks set
(``<ns>:__acks__.<worker>.<q>``, from the fetch until after the done event and the
follow-ups are written); an event is in its watcher's input list or a router's taken
list. :func:`pending` lists each of those that is not empty, with its first items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, cast

import redis

from ..config.model import WatcherSpec
from ..store.scripts import Scripts

#: Items shown per place.
SHOWN = 3


@dataclass(frozen=True, slots=True)
class Pending:
    """One place that still holds work."""

    where: str  # "queue 'report'", "delay queue 'flaky'", "input list 'global/done'"...
    key: str
    count: int
    first: tuple[str, ...]  # the first items, readable

    def __str__(self) -> str:
        shown = ", ".join(self.first)
        more = ", ..." if self.count > len(self.first) else ""
        return f"{self.where} ({self.key}): {self.count} -> {shown}{more}"


def pending(client: redis.Redis, namespace: str, watchers: Iterable[WatcherSpec]) -> list[Pending]:
    """Every non-empty queue, delay queue, acks set, input list and taken list, found in
    one step (``pending.lua``: read key by key, a message moving between two keys could
    be missed); their first items are read after, for the message."""
    prefix = f"{namespace}:"
    lists: dict[str, str] = {}  # watcher list or glob -> what it is
    for spec in watchers:
        lists[spec.input_queue] = f"input list {spec.input_queue!r}"
        for name in (spec.taken_queue, _glob(spec.taken_queue) + "/*"):
            lists[name] = f"taken list of {spec.input_queue!r}"
    reply = Scripts(client)["pending"](keys=[], args=[_glob(prefix) + "*", prefix, *lists])
    found: list[Pending] = []
    for i in range(0, len(reply), 2):
        key, count = _text(reply[i]), int(reply[i + 1])
        if key.startswith(prefix):
            found.append(_dramatiq(client, prefix, key, count))
        else:
            where = lists.get(key) or next(
                (w for g, w in lists.items() if g.endswith("/*") and fnmatchcase(key, g)),
                "a watcher's list",
            )
            first = tuple(repr(_text(e)) for e in client.lrange(key, -SHOWN, -1)[::-1])
            found.append(Pending(where, key, count, first))
    return found


def _dramatiq(client: redis.Redis, prefix: str, key: str, count: int) -> Pending:
    name = key[len(prefix) :]
    if name.startswith("__acks__."):
        members = cast(list[bytes], client.srandmember(key, SHOWN) or [])
        ids = [_text(i) for i in members]
        queue = name[len("__acks__.") :].split(".", 1)[-1]
        where = f"in flight from queue {queue!r}"
    else:
        ids = [_text(i) for i in client.lrange(key, 0, SHOWN - 1)]
        queue = name
        where = f"delay queue {name[:-3]!r}" if name.endswith(".DQ") else f"queue {name!r}"
    return Pending(where, key, count, _messages(client, f"{prefix}{queue}.msgs", ids))


def _messages(client: redis.Redis, msgs: str, ids: list[str]) -> tuple[str, ...]:
    """``actor(args)`` of each message id (its id when the payload is gone)."""
    if not ids:
        return ()
    shown = []
    for i, payload in zip(ids, client.hmget(msgs, ids), strict=True):
        try:
            data: Any = json.loads(payload or "")
            args = ", ".join(repr(a) for a in data["args"])
            kwargs = ", ".join(f"{k}={v!r}" for k, v in data["kwargs"].items())
            shown.append(f"{data['actor_name']}({', '.join(p for p in (args, kwargs) if p)})")
        except (ValueError, TypeError, KeyError):
            shown.append(f"message {i}")
    return tuple(shown)


def _glob(text: str) -> str:
    """``text`` with the glob characters of ``SCAN MATCH`` escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

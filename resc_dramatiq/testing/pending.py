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
from typing import Any

import redis

from ..config.model import WatcherSpec

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
    """Every non-empty queue, delay queue, acks set, input list and taken list."""
    found = _dramatiq(client, namespace)
    for spec in watchers:
        found += _lists(client, [spec.input_queue], f"input list {spec.input_queue!r}")
        others = client.scan_iter(match=_glob(spec.taken_queue) + "/*", count=500)
        taken = [spec.taken_queue, *sorted(_text(k) for k in others)]
        found += _lists(client, taken, f"taken list of {spec.input_queue!r}")
    return found


def _dramatiq(client: redis.Redis, ns: str) -> list[Pending]:
    found: list[Pending] = []
    prefix = f"{ns}:"
    for raw in sorted(client.scan_iter(match=_glob(prefix) + "*", count=500)):
        key = _text(raw)
        name = key[len(prefix) :]
        if name.startswith("__acks__."):
            ids = [_text(i) for i in client.smembers(key)] if client.type(key) == b"set" else []
            queue = name[len("__acks__.") :].split(".", 1)[-1]
            where = f"in flight from queue {queue!r}"
        elif client.type(key) == b"list" and not name.startswith("__"):
            ids = [_text(i) for i in client.lrange(key, 0, -1)]
            queue = name
            where = f"delay queue {name[:-3]!r}" if name.endswith(".DQ") else f"queue {name!r}"
        else:
            continue
        if ids:
            first = _messages(client, f"{prefix}{queue}.msgs", ids[:SHOWN])
            found.append(Pending(where, key, len(ids), first))
    return found


def _messages(client: redis.Redis, msgs: str, ids: list[str]) -> tuple[str, ...]:
    """``actor(args)`` of each message id (its id when the payload is gone)."""
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


def _lists(client: redis.Redis, keys: list[str], where: str) -> list[Pending]:
    found = []
    for key in keys:
        if client.type(key) != b"list":
            continue
        count = int(client.llen(key))
        # producers LPUSH, routers take from the right: the oldest first
        first = tuple(repr(_text(e)) for e in client.lrange(key, -SHOWN, -1)[::-1])
        found.append(Pending(where, key, count, first))
    return found


def _glob(text: str) -> str:
    """``text`` with the glob characters of ``SCAN MATCH`` escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

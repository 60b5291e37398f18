"""What a pipeline still has to do, read from Redis: the harness's idle check.

Work is always visible in Redis while a pipeline runs: a Dramatiq message is in its
queue (``<ns>:<q>``), its delay queue (``<ns>:<q>.DQ``) or a worker's acks set
(``<ns>:__acks__.<worker>.<q>``, from the fetch until after the done event and the
follow-ups are written); an event is in its watcher's input list or a router's taken
list. :func:`pending` lists each of those that is not empty, with its first items.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, cast

import redis

from ..config.model import WatcherSpec
from ..store.scripts import Scripts

#: Items shown per place.
SHOWN = 3
#: A delay queue (or its acks set) up to this many messages has every eta read.
DELAYED_READ = 1_000
#: Reads of the places when a message moved between the scan and the read of its items
#: (a worker taking a delayed message from its delay queue), before the last is taken.
READS = 5


@dataclass(frozen=True, slots=True)
class Pending:
    """One place that still holds work."""

    where: str  # "queue 'report'", "delay queue 'flaky'", "input list 'global/done'"...
    key: str
    count: int
    first: tuple[str, ...]  # the first items, readable
    #: a delay queue's messages, all due later than now: waiting for the clock, not work
    later: bool = False

    def __str__(self) -> str:
        shown = ", ".join(self.first)
        more = ", ..." if self.count > len(self.first) else ""
        return f"{self.where} ({self.key}): {self.count} -> {shown}{more}"


def pending(
    client: redis.Redis,
    namespace: str,
    watchers: Iterable[WatcherSpec],
    *,
    now_ms: int | None = None,
    horizon_ms: int | None = None,
    reads: int = READS,
) -> list[Pending]:
    """Every non-empty queue, delay queue, acks set, input list and taken list, found in
    one step (``pending.lua``: read key by key, a message moving between two keys could
    be missed); their first items are read after, for the message, and all is read
    again (up to ``reads`` times in all) when a message moved meanwhile. A delayed message
    says when it is due (relative to ``now_ms``, the real time when None); a place whose
    messages are all due after ``horizon_ms`` (default: now) is marked ``later``."""
    for _ in range(reads - 1):
        found, whole = _read(client, namespace, watchers, now_ms, horizon_ms)
        if whole:
            return found
        time.sleep(0.01)
    return _read(client, namespace, watchers, now_ms, horizon_ms)[0]


def _read(
    client: redis.Redis,
    namespace: str,
    watchers: Iterable[WatcherSpec],
    now_ms: int | None,
    horizon_ms: int | None,
) -> tuple[list[Pending], bool]:
    """The places, and whether every item the scan counted was still there to read."""
    prefix = f"{namespace}:"
    lists: dict[str, str] = {}  # watcher list or glob -> what it is
    for spec in watchers:
        lists[spec.input_queue] = f"input list {spec.input_queue!r}"
        for name in (spec.taken_queue, _glob(spec.taken_queue) + "/*"):
            lists[name] = f"taken list of {spec.input_queue!r}"
    reply = Scripts(client)["pending"](keys=[], args=[_glob(prefix) + "*", prefix, *lists])
    found: list[Pending] = []
    whole = True
    for i in range(0, len(reply), 2):
        key, count = _text(reply[i]), int(reply[i + 1])
        if key.startswith(prefix):
            place, read = _dramatiq(client, prefix, key, count, now_ms, horizon_ms)
            found.append(place)
            whole = whole and read
        else:
            where = lists.get(key) or next(
                (w for g, w in lists.items() if g.endswith("/*") and fnmatchcase(key, g)),
                "a watcher's list",
            )
            first = tuple(repr(_text(e)) for e in client.lrange(key, -SHOWN, -1)[::-1])
            found.append(Pending(where, key, count, first))
            whole = whole and len(first) == min(count, SHOWN)
    return found, whole


def _dramatiq(
    client: redis.Redis,
    prefix: str,
    key: str,
    count: int,
    now_ms: int | None,
    horizon_ms: int | None,
) -> tuple[Pending, bool]:
    """The place ``key``, and whether its messages the scan counted were all read."""
    name = key[len(prefix) :]
    acks = name.startswith("__acks__.")
    queue = name[len("__acks__.") :].split(".", 1)[-1] if acks else name
    delayed = queue.endswith(".DQ") and count <= DELAYED_READ
    read = count if delayed else SHOWN  # a delay queue's etas, all read: is it all later?
    if acks:
        members = client.smembers(key) if delayed else client.srandmember(key, read)
        ids = sorted(_text(i) for i in cast(Iterable[bytes], members or []))
        where = f"in flight from queue {queue!r}"
    else:
        ids = [_text(i) for i in client.lrange(key, 0, read - 1)]
        where = f"delay queue {name[:-3]!r}" if queue.endswith(".DQ") else f"queue {name!r}"
    now = time.time() * 1000 if now_ms is None else now_ms
    shown, etas, gone = _messages(client, f"{prefix}{queue}.msgs", ids, now)
    horizon = now if horizon_ms is None else horizon_ms
    later = delayed and len(etas) == count and all(eta > horizon for eta in etas)
    whole = len(ids) == min(count, read) and not gone
    return Pending(where, key, count, tuple(shown[:SHOWN]), later=later), whole


def _messages(
    client: redis.Redis, msgs: str, ids: list[str], now_ms: float
) -> tuple[list[str], list[float], int]:
    """``actor(args)`` of each message id (its id when the payload is gone or no
    message), with when it is due for a delayed one; the etas found; how many payloads
    were gone."""
    if not ids:
        return [], [], 0
    shown: list[str] = []
    etas: list[float] = []
    gone = 0
    for i, payload in zip(ids, client.hmget(msgs, ids), strict=True):
        if payload is None:
            gone += 1
        try:
            data: Any = json.loads(payload or "")
            args = ", ".join(repr(a) for a in data["args"])
            kwargs = ", ".join(f"{k}={v!r}" for k, v in data["kwargs"].items())
            call = f"{data['actor_name']}({', '.join(p for p in (args, kwargs) if p)})"
            eta = data["options"].get("eta")
        except (ValueError, TypeError, KeyError, AttributeError):
            shown.append(f"message {i}")
            continue
        if isinstance(eta, int | float) and not isinstance(eta, bool):
            etas.append(eta)
            left_s = (eta - now_ms) / 1000
            call += f" due in {left_s:.1f} s" if left_s > 0 else " due now"
        shown.append(call)
    return shown, etas, gone


def _glob(text: str) -> str:
    """``text`` with the glob characters of ``SCAN MATCH`` escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

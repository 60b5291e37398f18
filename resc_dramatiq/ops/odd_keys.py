"""Reading a keyspace anyone may write: one odd key fails only its own row.

Whoever can reach Redis can put anything at any key: a sorted set where a target list
should be, a string at a dedup set, a word in a hash of counters. Redis answers a read
of the wrong type with ``WRONGTYPE`` (a :class:`redis.ResponseError`, not an outage);
:class:`Reads` catches it for that key alone, reads it as empty, and keeps an
:class:`OddKey` naming the key and what it holds, so ``status`` and the dashboard show
every other figure and say which key is odd. Each odd key is logged once per process
(WARNING), not once per page or refresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from ..store.keyspace import text

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Most odd keys remembered as logged (beyond it, new ones are not logged again).
MAX_LOGGED = 10_000
_logged: set[str] = set()
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class OddKey:
    """A key that does not hold what it should."""

    key: str
    problem: str  # "holds a zset, not a list"

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


def noted(odd: OddKey) -> OddKey:
    """``odd``, logged at WARNING the first time this process meets it."""
    said = str(odd)
    with _lock:
        if said in _logged or len(_logged) >= MAX_LOGGED:
            return odd
        _logged.add(said)
    logger.warning("odd key %s (shown as such, the other figures are read)", said[:500])
    return odd


def is_wrong_type(error: BaseException) -> bool:
    """Whether ``error`` is Redis refusing a command on a key of another type."""
    return isinstance(error, redis.ResponseError) and str(error).startswith("WRONGTYPE")


def wrong_type(client: redis.Redis, key: str, expected: str) -> OddKey:
    """The :class:`OddKey` of ``key``, which does not hold an ``expected``, noted."""
    return noted(OddKey(key, f"holds a {text(client.type(key))}, not a {expected}"))


class Reads:
    """Reads of keys that should hold a given type; an odd key reads as empty and is kept
    in :attr:`odd`."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.odd: list[OddKey] = []

    def read(self, key: str, expected: str, read: Callable[[], T], empty: T) -> T:
        """``read()``, or ``empty`` when ``key`` holds another type than ``expected``."""
        try:
            return read()
        except redis.ResponseError as e:
            if not is_wrong_type(e):
                raise
        self.odd.append(wrong_type(self.client, key, expected))
        return empty

    def llen(self, key: str) -> int:
        """The length of list ``key``."""
        return int(self.read(key, "list", lambda: self.client.llen(key), 0))

    def zcard(self, key: str) -> int:
        """The size of sorted set ``key``."""
        return int(self.read(key, "zset", lambda: self.client.zcard(key), 0))

    def hlen(self, key: str) -> int:
        """The number of fields of hash ``key``."""
        return int(self.read(key, "hash", lambda: self.client.hlen(key), 0))

    def scored(self, key: str, end: int) -> list[tuple[str, float]]:
        """Members and scores of sorted set ``key``, from the lowest score to rank ``end``."""
        none: Any = []
        found: Any = self.read(
            key, "zset", lambda: self.client.zrange(key, 0, end, withscores=True), none
        )
        return [(text(member), float(score)) for member, score in found]

    def counters(self, key: str) -> dict[str, int]:
        """A hash of counters; a field that is no integer is left out (and noted)."""
        none: Any = {}
        found: Any = self.read(key, "hash", lambda: self.client.hgetall(key), none)
        counts: dict[str, int] = {}
        for field, value in found.items():
            name = text(field)
            number = as_int(value)
            if number is None:
                shown = text(value)[:40]
                self.odd.append(noted(OddKey(key, f"counter {name!r} is no integer: {shown!r}")))
            else:
                counts[name] = number
        return counts


def as_int(value: bytes | str | int) -> int | None:
    """``value`` as a Redis integer (ASCII digits, at most 20 of them), or None."""
    if isinstance(value, int):
        return value
    raw = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        return None
    return int(raw)


def odd_types(client: redis.Redis, expected: Mapping[str, str]) -> list[OddKey]:
    """The keys of ``expected`` (key -> Redis type) holding another type, noted; an
    absent key is none of them. One pipelined ``TYPE`` per key."""
    pipe = client.pipeline(transaction=False)
    for key in expected:
        pipe.type(key)
    found = [text(t) for t in pipe.execute()]
    return [
        noted(OddKey(key, f"holds a {held}, not a {want}"))
        for (key, want), held in zip(expected.items(), found, strict=True)
        if held not in ("none", want)
    ]

"""The per-minute counters behind the charts, as the commit script wrote them.

Each commit adds its counters to ``<input>/history/<minute>`` beside the totals (see
``store/lua/commit.lua``); the hashes expire after ``store.keys.HISTORY_TTL_S``, so the
history survives a dashboard restart and stays bounded. Reading an hour is one pipelined
``HGETALL`` per minute; a minute's key of another type, or a field that is no integer,
counts as nothing there (and is logged once, :mod:`~..ops.odd_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from ..ops.odd_keys import OddKey, as_int, is_wrong_type, noted
from ..store.keys import WatcherKeys
from ..store.keyspace import text

#: Minutes a chart shows.
MINUTES = 60
#: Minutes the rates of the pipeline page are averaged over.
RATE_MINUTES = 5


@dataclass(frozen=True, slots=True)
class History:
    """Counters per minute, oldest first; the last minute is the current one."""

    first_minute: int  # unix seconds // 60 of minutes[0]
    minutes: tuple[dict[str, int], ...]

    def series(self, field: str) -> list[int]:
        """One counter, minute by minute."""
        return [m.get(field, 0) for m in self.minutes]

    def rate_per_min(self, field: str, minutes: int = RATE_MINUTES) -> float:
        """The counter's mean per minute over the last ``minutes`` full minutes."""
        full = self.minutes[-minutes - 1 : -1] if len(self.minutes) > minutes else self.minutes
        return sum(m.get(field, 0) for m in full) / max(1, len(full))

    def total(self, field: str) -> int:
        """The counter summed over the whole history read."""
        return sum(self.series(field))


def read_history(
    client: redis.Redis, keys: WatcherKeys, now_s: float, minutes: int = MINUTES
) -> History:
    """The last ``minutes`` minutes of ``keys``' watcher, up to the one of ``now_s``."""
    last = int(now_s) // 60
    first = last - minutes + 1
    pipe = client.pipeline(transaction=False)
    for minute in range(first, last + 1):
        pipe.hgetall(keys.history_at(minute))
    found = pipe.execute(raise_on_error=False)
    read: list[dict[str, int]] = []
    for minute, counts in zip(range(first, last + 1), found, strict=True):
        if isinstance(counts, Exception):
            if not is_wrong_type(counts):
                raise counts
            noted(OddKey(keys.history_at(minute), "is no hash of counters"))
            counts = {}
        numbers = {text(k): as_int(v) for k, v in counts.items()}
        read.append({k: v for k, v in numbers.items() if v is not None})
    return History(first, tuple(read))

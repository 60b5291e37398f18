"""Per-rule counters written late when a batch touches many rules.

Each commit counts, per rule, the events matched and the tasks queued, deduplicated
and retried (``'<rule>|matched'`` ... in the watcher's stats hash). With a few rules in
a batch the commit script writes them itself, atomically with the batch. A batch of
500 events that matched 300 different rules would make as many ``HINCRBY`` calls as
it has events, and the script's time would double; then the script returns them
instead, and they are added up here and written in one transaction per
``flush_s``. Totals (``events``, ``queued``, ...) are always written by the commit.

What that costs in exactness, for the per-rule counters of such batches only: they
reach Redis up to ``flush_s`` late; those of the last ``flush_s`` before a router is
killed are lost, and so are the queued/deduplicated counts of a batch whose commit
reply was lost; a flush that fails is kept and sent again (so a flush whose own reply
was lost may count twice). Tasks and their dedup are not affected in any way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import redis
from redis.cluster import RedisCluster

from ..rules.batch import Batch
from .commit import CommitResult
from .keys import HISTORY_TTL_S, WatcherKeys

logger = logging.getLogger(__name__)

#: Most rules a batch may touch and still have its per-rule counters written by the
#: commit script itself.
INLINE_RULES = 8


class RuleCounts:
    """The per-rule counters of one watcher not written yet."""

    def __init__(self, write: Callable[[Mapping[str, int]], None], *, flush_s: float = 1.0) -> None:
        self.write = write  # adds counters to the stats and the minute's history
        self.flush_s = flush_s
        self.pending: dict[str, int] = {}
        self._next_flush = time.monotonic() + flush_s

    @staticmethod
    def later(batch: Batch) -> bool:
        """Whether ``batch``'s per-rule counters are to be written late."""
        return len(batch.counters) > INLINE_RULES  # one '<rule>|matched' per rule

    def committed(self, batch: Batch, result: CommitResult) -> None:
        """Add up a committed batch's counters (if they were left to us)."""
        if not self.later(batch):
            return
        # a repeated commit's reply says nothing of its rules: only 'matched' is known
        for counters in (batch.counters, result.per_rule):
            for name, count in counters.items():
                self.pending[name] = self.pending.get(name, 0) + count
        self.tick()

    def tick(self) -> None:
        """Flush if the time has come (the router's loop calls it after every round,
        also idle ones)."""
        if self.pending and time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        """Write what is pending; kept for the next flush if Redis fails."""
        self._next_flush = time.monotonic() + self.flush_s
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        try:
            self.write(pending)
        except Exception as e:
            logger.debug("per-rule counters kept for later: %s", e)
            for name, count in pending.items():
                self.pending[name] = self.pending.get(name, 0) + count


def add_counters(
    client: redis.Redis | RedisCluster, keys: WatcherKeys, counters: Mapping[str, int]
) -> None:
    """Add ``counters`` to the watcher's stats hash and to the history of the current
    minute (as the commit script does), in one transaction."""
    history = keys.history_at(int(time.time()) // 60)
    pipe = client.pipeline(transaction=True)
    for name, increment in counters.items():
        pipe.hincrby(keys.stats, name, increment)
        pipe.hincrby(history, name, increment)
    pipe.expire(history, HISTORY_TTL_S)
    pipe.execute()

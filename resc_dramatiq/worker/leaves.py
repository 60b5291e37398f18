"""Done events a worker does not write, counted: the operator's view of leaf actors.

A message of a leaf actor (``done_event=False``) writes no done event; neither does one
whose done event no rule could match, when the worker routes inline and the watcher of
its done list keeps no unmatched list (the event would only count as ``unmatched``). Both
are counted in the done list's stats hash (``<list>/stats``, field ``leaf``), which
``status``, the dashboard and ``/metrics`` read with the watcher's other counters.

The counts are added up in memory and written at most every ``flush_s`` (on the next
leaf, and when the worker stops), one ``HINCRBY`` per list: a worker killed meanwhile
loses its last second's counts, and a write that fails is kept for the next one. Nothing
else depends on them.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.cluster import RedisCluster

from ..store.resilience import is_transient

#: The stats field counting done events not written.
LEAF_FIELD = "leaf"


class LeafCounts:
    """Per done list, the done events not written and not yet counted in Redis."""

    def __init__(self, *, logger: logging.Logger, flush_s: float = 1.0) -> None:
        self.logger, self.flush_s = logger, flush_s
        self.pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self._next_flush = 0.0

    def add(self, client: redis.Redis | RedisCluster, done_queue: str) -> None:
        """Count one done event of ``done_queue`` not written; flush when due."""
        with self._lock:
            self.pending[done_queue] = self.pending.get(done_queue, 0) + 1
            due = time.monotonic() >= self._next_flush
        if due:
            self.flush(client)

    def flush(self, client: redis.Redis | RedisCluster) -> None:
        """Write the counts gathered (kept for the next flush when Redis is away)."""
        with self._lock:
            counts, self.pending = self.pending, {}
            self._next_flush = time.monotonic() + self.flush_s
        if not counts:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for done_queue, count in counts.items():
                pipe.hincrby(f"{done_queue}/stats", LEAF_FIELD, count)
            pipe.execute()
        except Exception as e:
            with self._lock:
                for done_queue, count in counts.items():
                    self.pending[done_queue] = self.pending.get(done_queue, 0) + count
            if not is_transient(e):
                self.logger.error("the leaf counts cannot be written: %s: %s", type(e).__name__, e)

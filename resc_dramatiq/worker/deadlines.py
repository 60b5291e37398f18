"""Join deadlines fired by the workers that route inline, for fleets without a router.

A worker whose ``Completion`` routes done events inline (``rules=`` or
``route_inline=True``) with join rules that have a ``deadline_s`` runs one thread
(``resc-deadlines``) that fires the due groups of those rules every ``interval_s``,
as a router's upkeep does (:class:`~resc_dramatiq.store.joins.Deadlines`): every worker
and router may try, ``expire.lua`` fires each group once, and never early.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ..store.joins import Deadlines
from ..store.resilience import is_transient

#: How often the due groups are looked for (a router's upkeep: a quarter of its 6 s TTL).
INTERVAL_S = 1.5


class DeadlineRounds:
    """A thread firing ``deadlines`` every ``interval_s`` until :meth:`stop`."""

    def __init__(
        self,
        deadlines: Sequence[Deadlines],
        *,
        logger: logging.Logger,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.deadlines, self.logger, self.interval_s = deadlines, logger, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resc-deadlines", daemon=True)

    def start(self) -> DeadlineRounds:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (its round in hand finishes first)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            for deadlines in self.deadlines:
                try:
                    deadlines.fire()
                except Exception as e:  # a round must never end the thread
                    if is_transient(e):
                        continue  # Redis away: the next round tries again
                    self.logger.exception("firing the join deadlines failed")

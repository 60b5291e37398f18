"""A worker's writes ride through short Redis outages: a bounded retry loop.

Every write a worker makes for a message (a dedup release, a done or failure event, an
inline commit) is idempotent: a ``ZREM``, or a script guarded by the message's marker.
So a write whose reply was lost may be sent again. :class:`Retrying` does so for
transient errors (see :func:`~resc_dramatiq.store.resilience.is_transient`) with a capped
backoff, up to ``attempts`` tries; a write that still fails is logged at CRITICAL as a
``LOST:`` line naming it (a Dramatiq hook has no one to raise to: Dramatiq would log the
exception and ack the message anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from ..errors import RescError
from ..store.resilience import Backoff, is_transient

T = TypeVar("T")

#: ~12 s of capped backoff: long enough for a Sentinel or cluster failover.
DEFAULT_ATTEMPTS = 16


class Retrying:
    """Runs idempotent writes, retrying transient Redis errors ``attempts`` times at most."""

    def __init__(
        self,
        *,
        logger: logging.Logger,
        attempts: int = DEFAULT_ATTEMPTS,
        first_s: float = 0.05,
        cap_s: float = 1.0,
    ) -> None:
        self.logger = logger
        self.attempts = attempts
        self.first_s = first_s
        self.cap_s = cap_s
        self._never = threading.Event()  # a hook is not interrupted: each wait runs out

    def run(self, what: str, write: Callable[[], T]) -> T | None:
        """``write()``'s result; None when it failed for good (logged as ``LOST: <what>``).

        A :class:`~resc_dramatiq.errors.RescError` (a key of the wrong type: nothing was
        written) is raised to the caller, which knows what to do with the event instead.
        """
        backoff = Backoff(first_s=self.first_s, cap_s=self.cap_s)
        while True:
            try:
                return write()
            except Exception as e:
                if not is_transient(e) or backoff.failures + 1 >= self.attempts:
                    if isinstance(e, RescError):
                        raise
                    self.logger.critical(
                        "LOST: %s failed after %d attempt(s): %s: %s",
                        what,
                        backoff.failures + 1,
                        type(e).__name__,
                        e,
                    )
                    return None
                backoff.wait(self._never)

"""Surviving Redis outages: capped exponential backoff, state-change logging."""

from __future__ import annotations

import logging
import random
import threading

import redis

#: Errors that mean "Redis is unreachable or restarting": wait and try again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.TryAgainError,
)


def is_transient(error: BaseException) -> bool:
    """True for errors that a reconnect can cure (including a server still loading)."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, redis.ResponseError) and str(error).startswith(
        ("LOADING", "MASTERDOWN", "READONLY")
    )


class Backoff:
    """Capped exponential backoff with jitter; ``wait`` returns early on ``stop``."""

    def __init__(self, *, first_s: float = 0.05, cap_s: float = 5.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.failures = 0

    def delay_s(self) -> float:
        """The next wait: doubles per failure up to the cap, with ±20 % jitter."""
        base = min(self.cap_s, self.first_s * 2.0 ** min(self.failures, 30))
        return float(base * random.uniform(0.8, 1.2))

    def wait(self, stop: threading.Event) -> None:
        """Sleep the next delay (or until ``stop`` is set) and count a failure."""
        stop.wait(self.delay_s())
        self.failures += 1

    def reset(self) -> None:
        """Back to the first delay after a success."""
        self.failures = 0


class Availability:
    """Logs once when Redis becomes unreachable and once when it is back.

    Thread-safe: the threads of one router share one, so an outage is one line in the
    log however many threads (and retries) run into it.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.down = False
        self.outages = 0
        self._lock = threading.Lock()

    def failed(self, error: BaseException) -> None:
        """Record a failed call; logs only on the change of state."""
        with self._lock:
            if self.down:
                return
            self.down = True
            self.outages += 1
        self.logger.warning(
            "%s: Redis unreachable (%s); retrying with backoff", self.what, type(error).__name__
        )

    def succeeded(self) -> bool:
        """Record a successful call; True when this ends an outage."""
        with self._lock:
            if not self.down:
                return False
            self.down = False
        self.logger.warning("%s: Redis reachable again; resuming", self.what)
        return True

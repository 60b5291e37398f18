"""Surviving Redis outages and failovers: capped exponential backoff, state-change
logging, and waiting for replicas (``WAIT``) with its shortfalls logged once.

A cluster's failover or slot migration is transient too (``MOVED``, ``ASK``,
``TRYAGAIN``, ``CLUSTERDOWN``: see :mod:`.cluster`). A Sentinel failover looks like an
outage to the callers here: the old primary's
connections fail (``ConnectionError``), a demoted primary answers ``READONLY`` (redis-py's
Sentinel pool turns that into ``ConnectionError`` and asks the Sentinels again), and
``MASTERDOWN`` or "no master found" follow until the Sentinels agree on a new one; a
primary demoted while a client waits in a blocking command answers it ``UNBLOCKED``. Each
is transient: back off, reconnect, carry on with the new primary. What the callers log is
one WARNING line per change of state (:class:`Availability`, :class:`PrimaryWatch`);
the tracebacks of these expected errors go to DEBUG.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

import redis

from ..compat import last_primary, sentinel_pool, sentinel_service

#: Errors that mean "Redis is unreachable or restarting", or (on a cluster) "this slot
#: is served elsewhere now, or is moving": wait and try again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError,  # redis-py's "TTL exhausted": a slot kept moving
    redis.exceptions.ReadOnlyError,  # a demoted primary (a failover) refusing a write
)


#: Replies of a server that is no primary any more, or not yet: redis-py strips the code
#: of those it has a class for (``ReadOnlyError``, ``BusyLoadingError``, ``MasterDownError``)
#: and keeps it in the text of the others.
TRANSIENT_REPLIES = ("LOADING", "MASTERDOWN", "READONLY", "NOREPLICAS", "UNBLOCKED")


def is_transient(error: BaseException) -> bool:
    """True for errors that a reconnect can cure: an unreachable or loading server, and a
    primary demoted by a failover (its writes answer ``READONLY``, a blocking command in
    flight ``UNBLOCKED``) until the client reaches the new one."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, redis.ResponseError) and str(error).startswith(TRANSIENT_REPLIES)


def why(error: BaseException) -> str:
    """The error's class, and for a server's reply its text (``READONLY``, ``UNBLOCKED``:
    a demoted primary), cut short."""
    if isinstance(error, redis.ResponseError):
        text = str(error)
        return f"{type(error).__name__}: {text[:77] + '...' if len(text) > 80 else text}"
    return type(error).__name__


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
            "%s: Redis unreachable (%s); retrying with backoff", self.what, why(error)
        )
        self.logger.debug("%s: the error that began the outage", self.what, exc_info=error)

    def succeeded(self) -> bool:
        """Record a successful call; True when this ends an outage."""
        with self._lock:
            if not self.down:
                return False
            self.down = False
        self.logger.warning("%s: Redis reachable again; resuming", self.what)
        return True


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """``WAIT replicas timeout_ms`` after a write, on the connection that wrote it."""

    replicas: int
    timeout_ms: int

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.timeout_ms < 0:
            raise ValueError(
                f"wait for at least 1 replica with a timeout >= 0 ms, not {self.replicas} "
                f"replica(s) and {self.timeout_ms} ms"
            )

    @classmethod
    def of(cls, replicas: int, timeout_ms: int) -> ReplicaWait | None:
        """The wait asked for; None when ``replicas`` is 0 (no wait)."""
        return cls(replicas, timeout_ms) if replicas else None


class Replication:
    """Logs once when writes stop reaching the replicas asked for, once when they do again.

    A ``WAIT`` that times out does not undo the write (it is on the primary, and is
    lost only if the primary dies before a replica has it): the caller carries on, and
    the shortfall is said once per change of state. Thread-safe, like
    :class:`Availability`.
    """

    def __init__(self, logger: logging.Logger, what: str, wait: ReplicaWait) -> None:
        self.logger = logger
        self.what = what
        self.wait = wait
        self.short = False
        self.shortfalls = 0
        self._lock = threading.Lock()

    def acked(self, replicas: int) -> bool:
        """Record how many replicas acknowledged a write; True when enough did."""
        enough = replicas >= self.wait.replicas
        with self._lock:
            if enough == (not self.short):
                return enough
            self.short = not enough
            self.shortfalls += not enough
        if enough:
            self.logger.warning(
                "%s: writes reach %d replica(s) again", self.what, self.wait.replicas
            )
        else:
            self.logger.warning(
                "%s: only %d of %d replica(s) acknowledged within %d ms; carrying on "
                "(writes since may be lost if the primary fails now)",
                self.what,
                replicas,
                self.wait.replicas,
                self.wait.timeout_ms,
            )
        return enough


class PrimaryWatch:
    """Logs once each time a Sentinel-backed client finds its primary at a new address.

    For any other client :meth:`check` does nothing. The address is the one redis-py's
    Sentinel pool last discovered (it asks on every new connection).
    """

    def __init__(self, logger: logging.Logger, what: str, client: redis.Redis) -> None:
        self.logger = logger
        self.what = what
        self.pool = sentinel_pool(client)
        self.address: tuple[str, int] | None = None
        self.changes = 0

    def check(self) -> bool:
        """Note the primary's address; True (and one log line) when it changed."""
        if self.pool is None:
            return False
        address = last_primary(self.pool)
        if address is None or address == self.address:
            return False
        previous, self.address = self.address, address
        if previous is None:
            return False
        self.changes += 1
        self.logger.warning(
            "%s: the primary of %r is now %s:%s (was %s:%s); following it",
            self.what,
            sentinel_service(self.pool),
            *address,
            *previous,
        )
        return True

"""What a router is told: its tuning, and the observer it reports to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..store.commit import CommitResult
from ..store.resilience import ReplicaWait


@dataclass(frozen=True, slots=True)
class RouterOptions:
    """Tuning of a router; the defaults suit most fleets."""

    batch_size: int = 500
    block_s: float = 1.0
    heartbeat_ttl_s: float = 6.0
    namespace: str | None = None  # Dramatiq's; None: the config's ``namespace``
    restart_limit: int = 5
    prune_interval_s: float = 60.0  # dedup sets of makes with ``ttl_s`` (see housekeeping)
    #: ``WAIT`` for this many replicas after each commit, before the next (0: no wait);
    #: a wait that times out is logged once and the router carries on (see
    #: docs/high-availability.md).
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    #: An OpenTelemetry span per committed batch, linked to its events' spans (the
    #: ``otel`` extra; docs/tracing.md), on the global tracer provider.
    trace: bool = False

    @property
    def replica_wait(self) -> ReplicaWait | None:
        """The ``WAIT`` after each commit, None when not asked for."""
        return ReplicaWait.of(self.wait_replicas, self.wait_timeout_ms)


class CommitSpans(Protocol):
    """Records a span per committed batch (:class:`resc_dramatiq.tracing.CommitTracer`)."""

    def committed(
        self, watcher: str, traces: Sequence[str], *, events: int, queued: int, taken_at: float
    ) -> None: ...


class Observer:
    """Hooks the router calls; the default does nothing (metrics override them)."""

    def batch_committed(
        self,
        watcher: str,
        events: int,
        result: CommitResult,
        unmatched: int,
        commit_s: float,
        event_to_commit_s: float,
    ) -> None:
        """A batch was committed."""

    def reconnected(self, watcher: str) -> None:
        """Redis came back after an outage."""

    def schedule_started(self, schedule: str) -> None:
        """This router fires ``schedule`` from now on."""

    def schedule_fired(self, schedule: str, ticks: int, lag_s: float) -> None:
        """This router fired ``ticks`` of a schedule; ``lag_s``: the newest one's lag
        (its scheduled time to its push, Redis clock)."""

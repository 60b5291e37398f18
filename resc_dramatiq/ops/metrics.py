"""Prometheus metrics of the router, named in the style of Dramatiq's own middleware.

:class:`RouterMetrics` is an :class:`~resc_dramatiq.router.options.Observer`: give it to one or
more routers (``Router(..., observer=metrics)``) and it counts what every committed
batch did. It keeps its metrics in a registry of its own, never in prometheus_client's
global default one, so several instances (in tests, or embedded in an application) never
clash. :func:`serve` exposes that registry over HTTP for Prometheus to scrape.

Every metric but the process ones carries the label ``watcher`` (the input list), or,
for the schedules' ones, ``schedule`` (its name).
"""

from __future__ import annotations

from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from ..router.options import Observer
from ..store.commit import CommitResult

#: Dramatiq's duration buckets (ms), with finer steps below 5 ms: a commit takes ~1 ms.
DURATION_BUCKETS_MS = (
    0.5,
    1,
    2.5,
    5,
    10,
    25,
    50,
    75,
    100,
    250,
    500,
    750,
    1000,
    2500,
    5000,
    7500,
    10000,
    30000,
    60000,
    600000,
    900000,
    float("inf"),
)

#: Events per batch; the router's ``--batch`` is at most 100 000.
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 100000)

LABELS = ("watcher",)

#: Firing lag of a schedule (ms): a few ms normally, seconds after an outage, more when
#: missed ticks are caught up.
LAG_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 60000, 3600000)


class RouterMetrics(Observer):
    """Counters and histograms of the routers it observes, in its own registry.

    Thread-safe: the watcher threads of every router may share one instance.
    """

    def __init__(self, *, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._per_watcher: list[Counter | Histogram] = []  # labelled by watcher
        if process:  # what the default registry would give, in ours
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.events_taken = self._counter("resc_events_taken_total", "Events taken and committed.")
        self.tasks_queued = self._counter("resc_tasks_queued_total", "Tasks queued.")
        self.tasks_deduplicated = self._counter(
            "resc_tasks_deduplicated_total", "Tasks skipped: already in their dedup set."
        )
        self.events_retried = self._counter(
            "resc_events_retried_total", "Events whose rule failed, put back for another try."
        )
        self.events_dead_lettered = self._counter(
            "resc_events_dead_lettered_total", "Events moved to the dead-letter list."
        )
        self.events_unmatched = self._counter(
            "resc_events_unmatched_total", "Events that matched no rule."
        )
        self.commits_repeated = self._counter(
            "resc_commits_repeated_total", "Commits retried after a lost reply (not redone)."
        )
        self.redis_reconnects = self._counter(
            "resc_redis_reconnects_total", "Times Redis came back after an outage."
        )
        self.batch_size = self._histogram(
            "resc_batch_size", "Events per committed batch.", BATCH_SIZE_BUCKETS
        )
        self.commit_duration = self._histogram(
            "resc_commit_duration_milliseconds",
            "Time the commit script of a batch took, round trip included.",
            DURATION_BUCKETS_MS,
        )
        self.event_to_commit = self._histogram(
            "resc_event_to_commit_milliseconds",
            "Time from taking a batch's events to their commit.",
            DURATION_BUCKETS_MS,
        )

        self.schedule_ticks = Counter(
            "resc_schedule_ticks_fired_total",
            "Ticks of a schedule this router fired (each tick is fired by one router).",
            ("schedule",),
            registry=self.registry,
        )
        self.schedule_lag = Histogram(
            "resc_schedule_lag_milliseconds",
            "Time from a tick's scheduled time to its event or message being pushed.",
            ("schedule",),
            buckets=LAG_BUCKETS_MS,
            registry=self.registry,
        )

    def _counter(self, name: str, documentation: str) -> Counter:
        counter = Counter(name, documentation, LABELS, registry=self.registry)
        self._per_watcher.append(counter)
        return counter

    def _histogram(self, name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
        histogram = Histogram(name, documentation, LABELS, buckets=buckets, registry=self.registry)
        self._per_watcher.append(histogram)
        return histogram

    def declare(self, watcher: str) -> None:
        """Show ``watcher``'s metrics at zero before its first batch (Prometheus advice)."""
        for metric in self._per_watcher:
            metric.labels(watcher)

    def batch_committed(
        self,
        watcher: str,
        events: int,
        result: CommitResult,
        unmatched: int,
        commit_s: float,
        event_to_commit_s: float,
    ) -> None:
        """Count a committed batch."""
        self.events_taken.labels(watcher).inc(events)
        self.tasks_queued.labels(watcher).inc(result.queued)
        self.tasks_deduplicated.labels(watcher).inc(result.deduplicated)
        self.events_retried.labels(watcher).inc(result.retried)
        self.events_dead_lettered.labels(watcher).inc(result.dead)
        self.events_unmatched.labels(watcher).inc(unmatched)
        if result.repeated:
            self.commits_repeated.labels(watcher).inc()
        self.batch_size.labels(watcher).observe(events)
        self.commit_duration.labels(watcher).observe(commit_s * 1000)
        self.event_to_commit.labels(watcher).observe(event_to_commit_s * 1000)

    def reconnected(self, watcher: str) -> None:
        """Count the end of an outage."""
        self.redis_reconnects.labels(watcher).inc()

    def schedule_started(self, schedule: str) -> None:
        """Show ``schedule``'s metrics at zero before its first firing."""
        self.schedule_ticks.labels(schedule)
        self.schedule_lag.labels(schedule)

    def schedule_fired(self, schedule: str, ticks: int, lag_s: float) -> None:
        """Count fired ticks and observe the newest one's lag."""
        self.schedule_ticks.labels(schedule).inc(ticks)
        self.schedule_lag.labels(schedule).observe(lag_s * 1000)


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running ``/metrics`` endpoint (a daemon thread)."""

    server: WSGIServer
    host: str
    port: int

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()


def serve(metrics: RouterMetrics, *, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Serve ``metrics`` at ``http://host:port/metrics``; port 0 picks a free one.

    Raises ``OSError`` when the address cannot be bound (port taken, unknown host).
    """
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server=server, host=host, port=server.server_address[1])

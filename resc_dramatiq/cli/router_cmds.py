"""``router`` and ``push``: run the router, feed it root events.

Over ~250 lines on purpose: the router command's options (instances, processes, metrics,
logging, replicas) are read and checked in one place.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import click

from ..errors import ConfigError, LayoutRefused
from ..ops.metrics import RouterMetrics, serve
from ..router.options import RouterOptions
from ..router.router import Router
from ..rules.fetch import Fetcher
from ..rules.ruleset import RuleSet
from . import main
from .common import (
    EXIT_FAILED,
    EXIT_INVALID,
    app_option,
    connect,
    fail,
    load,
    log_format_option,
    optional_config_argument,
    redis_url_option,
    safe_url,
    setup_logging,
)
from .router_processes import processes_option, supervise
from .servers import Server, namespace_for, servers_for

logger = logging.getLogger(__name__)


def routers_for(
    ruleset: RuleSet, servers: Sequence[Server], **kwargs: object
) -> list[tuple[Router, Server]]:
    """One router per distinct Redis among the watchers (``servers[i]`` is watcher i's)."""
    groups: dict[str, tuple[Server, list[int]]] = {}
    for i, server in enumerate(servers):
        groups.setdefault(server.url, (server, []))[1].append(i)
    return [
        (
            Router(
                ruleset=dataclasses.replace(
                    ruleset, watchers=tuple(ruleset.watchers[i] for i in idx)
                ),
                client=server.connect(),
                **kwargs,  # type: ignore[arg-type]
            ),
            server,
        )
        for server, idx in groups.values()
    ]


@main.command()
@optional_config_argument
@app_option
@redis_url_option
@processes_option
@click.option(
    "--batch",
    "batch_size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Most events taken and committed at once per watcher.",
)
@click.option("--instance", help="Name of this router instance (default: random).")
@click.option(
    "--heartbeat-ttl",
    "heartbeat_ttl_s",
    default=6.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds without heartbeat after which other instances reclaim our events.",
)
@click.option(
    "--restart-limit",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Failures in a row after which a crashing watcher stops the router (exit 1).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@log_format_option
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on this port (0: a free one, logged at start).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the metrics endpoint (0.0.0.0: every interface).",
)
@click.option(
    "--wait-replicas",
    default=0,
    show_default=True,
    type=click.IntRange(0, 100),
    help="After each commit, WAIT until this many replicas have it before the next "
    "(0: no wait). Fewer acks within --wait-timeout-ms are logged, and routing goes on.",
)
@click.option(
    "--wait-timeout-ms",
    default=1000,
    show_default=True,
    type=click.IntRange(0, 600_000),
    help="Longest wait for the replicas of --wait-replicas (0: no limit).",
)
@click.option(
    "--trace",
    is_flag=True,
    help="An OpenTelemetry span per committed batch, linked to its events' spans, on the "
    "global tracer provider (the otel extra; run under opentelemetry-instrument, or set a "
    "provider up: docs/tracing.md).",
)
def router(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    processes: int,
    batch_size: int,
    instance: str | None,
    heartbeat_ttl_s: float,
    restart_limit: int,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
    wait_replicas: int,
    wait_timeout_ms: int,
    trace: bool,
) -> None:
    """Watch the input lists of CONFIG (and --app's rules) and route until SIGTERM/SIGINT."""
    loaded = load(config, app)
    ruleset = loaded.ruleset
    servers = servers_for(loaded, redis_url)
    setup_logging(log_level, log_format, {"instance": instance} if instance else None)
    if processes > 1:
        supervise(
            click.get_current_context(), processes, instance or uuid.uuid4().hex[:8], restart_limit
        )
    options = RouterOptions(
        batch_size=batch_size,
        heartbeat_ttl_s=heartbeat_ttl_s,
        restart_limit=restart_limit,
        namespace=namespace_for(loaded),
        wait_replicas=wait_replicas,
        wait_timeout_ms=wait_timeout_ms,
        trace=trace,
    )
    try:
        expander = Fetcher.for_ruleset(ruleset)
    except ConfigError as e:
        fail(str(e))
    observer = start_metrics(ruleset, metrics_host, metrics_port)
    try:
        started = routers_for(
            ruleset, servers, instance=instance, options=options, expander=expander,
            observer=observer,
        )  # fmt: skip
    except ConfigError as e:  # --trace without the otel extra
        fail(str(e))
    for r, server in started:
        watching = ", ".join(repr(loop.spec.input_queue) for loop in r.loops)
        logger.info(
            "router %s started; watching %s on %s",
            r.instance,
            watching,
            safe_url(server.url),
            extra={"instance": r.instance},
        )
    run_routers([r for r, _ in started])


def run_routers(routers: list[Router]) -> NoReturn:
    """Run each router in its own thread until SIGTERM/SIGINT or a failure; exit."""

    def stop(signum: int, frame: FrameType | None) -> None:
        for r in routers:
            r.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failures: list[BaseException] = []

    def run(r: Router) -> None:
        try:
            r.run()
        except BaseException as e:  # reported below, and the others are stopped
            failures.append(e)
            stop(0, None)

    # everything built so far (modules, rules, clients) lives as long as the process:
    # out of the collector's sight, a full collection no longer rescans it every time
    gc.freeze()
    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in routers]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    for r in routers:
        logger.info("router %s stopped", r.instance, extra={"instance": r.instance})
    if failures and isinstance(failures[0], LayoutRefused):
        fail(str(failures[0]), EXIT_INVALID)  # refused before it started: as a bad config
    if failures:
        fail(f"router stopped: {failures[0]}", EXIT_FAILED)
    sys.exit(0)


def start_metrics(ruleset: RuleSet, host: str, port: int | None) -> RouterMetrics | None:
    """Serve the routers' metrics when asked (``port`` given); exit 1 if the port is taken."""
    if port is None:
        return None
    metrics = RouterMetrics()
    for watcher in ruleset.watchers:
        metrics.declare(watcher.spec.input_queue)
    try:
        server = serve(metrics, host=host, port=port)
    except OSError as e:
        fail(f"cannot serve metrics on {host}:{port}: {e}", EXIT_FAILED)
    logger.info("metrics on %s", server.url)
    return metrics


@main.command()
@redis_url_option
@click.option(
    "--wait-replicas",
    default=0,
    type=click.IntRange(0, 100),
    help="WAIT until this many replicas have the events (exit 1 if fewer within "
    "--wait-timeout-ms).",
)
@click.option("--wait-timeout-ms", default=1000, type=click.IntRange(0, 600_000))
@click.argument("queue")
@click.argument("events", nargs=-1, required=True)
def push(
    redis_url: str | None,
    wait_replicas: int,
    wait_timeout_ms: int,
    queue: str,
    events: tuple[str, ...],
) -> None:
    """LPUSH root EVENTS onto the list QUEUE, as a producer does."""
    client = connect(redis_url or "redis://127.0.0.1:6379/0")
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(queue, *events)
            if wait_replicas:
                pipe.wait(wait_replicas, wait_timeout_ms)
            replies = pipe.execute()
    except Exception as e:
        fail(f"cannot push to {queue!r}: {e}", EXIT_FAILED)
    click.echo(f"pushed {len(events)} event(s) onto {queue!r}")
    if wait_replicas and int(replies[-1]) < wait_replicas:
        fail(
            f"only {replies[-1]} of {wait_replicas} replica(s) acknowledged the push "
            f"within {wait_timeout_ms} ms",
            EXIT_FAILED,
        )

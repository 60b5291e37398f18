"""``demo``: the example pipeline end to end, with live progress and a verdict."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Mapping

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..ops.demo import DemoError, DemoOptions, DemoReport, expected_tasks, run_demo
from ..ops.embedded import EmbeddedUnavailable, ensure_available
from ..ops.example import ExampleNotFound, example_project
from . import main
from .common import EXIT_FAILED, fail, safe_url

EXIT_INTERRUPTED = 130


@main.command()
@click.option(
    "--redis-url",
    help="Use this Redis instead of starting an embedded one (which needs the embedded extra).",
)
@click.option(
    "--events", default=20, show_default=True, type=click.IntRange(1, 1000), help="Root events."
)
@click.option("--processes", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, type=float)
@click.option(
    "--dashboard",
    "with_dashboard",
    is_flag=True,
    help="Also run the web dashboard, print its address, and keep it all running after "
    "the verdict until Ctrl-C (or SIGTERM).",
)
@click.option("--dashboard-port", default=8060, show_default=True, type=click.IntRange(1, 65535))
def demo(
    redis_url: str | None,
    events: int,
    processes: int,
    threads: int,
    timeout_s: float,
    with_dashboard: bool,
    dashboard_port: int,
) -> None:
    """Run the example pipeline: Redis, router, Dramatiq workers; verify every task ran once."""
    # SIGTERM (a service manager, `timeout`, `kill`) ends the demo as Ctrl-C does: every
    # process it started is stopped on the way out, none is left running under PID 1
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = dashboard_port if with_dashboard else None
    try:
        options = DemoOptions(
            redis_url, events, processes, threads, timeout_s, example_project(), port
        )
        if redis_url is None:
            ensure_available()
    except (ExampleNotFound, EmbeddedUnavailable) as e:
        fail(str(e))
    console = Console()
    expected = expected_tasks(events)
    console.print(
        f"demo: {events} acquisitions (each pushed twice) -> treat -> propagate (2 children)"
        " -> report -> summarize (a join: once both reports of a product are done);"
        f" Redis {'at ' + safe_url(redis_url) if redis_url else 'embedded'}"
    )
    try:
        with Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bars = {s: progress.add_task(s, total=len(t)) for s, t in expected.items()}

            def update(counts: Mapping[str, int]) -> None:
                for stage, count in counts.items():
                    progress.update(bars[stage], completed=count)

            def linger(report: DemoReport) -> None:
                progress.stop()
                summarize(console, report)
                console.print("the dashboard stays up: Ctrl-C to stop the demo")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)

            report = run_demo(
                options,
                on_progress=update,
                on_dashboard=lambda url: console.print(f"dashboard at {url}"),
                linger=linger if with_dashboard else None,
            )
    except KeyboardInterrupt:
        console.print("interrupted: every process the demo started was stopped")
        sys.exit(EXIT_INTERRUPTED)
    except DemoError as e:
        fail(str(e), EXIT_FAILED)
    if not with_dashboard:  # lingering printed it while the dashboard ran
        summarize(console, report)
    sys.exit(EXIT_FAILED if report.problems else 0)


def summarize(console: Console, report: DemoReport) -> None:
    """Print the counts and the verdict."""
    table = Table(title="demo summary")
    table.add_column("stage")
    table.add_column("expected", justify="right")
    table.add_column("ran once", justify="right")
    for stage, tasks in report.expected.items():
        once = sum(1 for t in tasks if report.runs.get(t) == 1)
        table.add_row(stage, str(len(tasks)), str(once))
    console.print(table)
    stats = report.stats
    console.print(
        f"events routed {stats.get('events', 0)}, tasks queued {stats.get('queued', 0)}, "
        f"duplicates dropped {stats.get('deduplicated', 0)}, "
        f"report results fetched from this process {len(report.results)}, "
        f"{report.elapsed_s:.1f}s"
    )
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {problem}")
    console.print("verified: every task ran exactly once" if not report.problems else "FAILED")

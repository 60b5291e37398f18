"""``status``: what the pipelines hold right now, as tables, JSON, or a live view."""

from __future__ import annotations

import dataclasses
import json
import time

import click
import redis
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ..rules import RuleSet
from ..status import WatcherStatus, as_json, gather
from . import main
from .common import (
    EXIT_FAILED,
    app_option,
    connect,
    fail,
    load_rules,
    optional_config_argument,
    redis_url_option,
    safe_url,
)


@main.command()
@optional_config_argument
@app_option
@redis_url_option
@click.option("--json", "as_json_output", is_flag=True, help="Print JSON for scripts.")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval",
    "interval_s",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds between refreshes with --watch.",
)
def status(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    as_json_output: bool,
    watch: bool,
    interval_s: float,
) -> None:
    """Show input depths, events in flight, counters, targets and dedup sets of CONFIG."""
    ruleset = load_rules(config, app)
    if not watch:
        statuses = _gather(ruleset, redis_url)
        if as_json_output:
            click.echo(json.dumps(as_json(statuses), indent=2))
        else:
            Console().print(render(statuses))
        return
    console = Console()
    try:
        with Live(render(_gather(ruleset, redis_url)), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval_s)
                statuses = _gather(ruleset, redis_url)
                if as_json_output:
                    live.console.print_json(json.dumps(as_json(statuses)))
                else:
                    live.update(render(statuses), refresh=True)
    except KeyboardInterrupt:
        pass


def _gather(ruleset: RuleSet, redis_url: str | None) -> list[WatcherStatus]:
    """Every watcher's status, each read from its own Redis; exit 1 when unreachable."""
    statuses: list[WatcherStatus] = []
    for i, watcher in enumerate(ruleset.watchers):
        url = redis_url or ruleset.config.redis_url(watcher.spec)
        one = dataclasses.replace(ruleset, watchers=(ruleset.watchers[i],))
        client = connect(url)
        try:
            statuses += gather(one, client)
        except redis.RedisError as e:
            fail(f"Redis at {safe_url(url)} unreachable: {type(e).__name__}", EXIT_FAILED)
        finally:
            client.close()
    return statuses


def render(statuses: list[WatcherStatus]) -> Group:
    """Rich tables: one block per watcher."""
    blocks: list[Table] = []
    for s in statuses:
        blocks.append(_watcher_table(s))
        if s.instances:
            blocks.append(
                _table(
                    "router instances",
                    ["instance", "alive", "heartbeat age", "in flight"],
                    [
                        [
                            i.name,
                            "yes" if i.alive else "no",
                            _age(i.heartbeat_age_s),
                            str(i.in_flight),
                        ]
                        for i in s.instances
                    ],
                )
            )
        blocks.append(
            _table(
                "rules",
                ["rule", "matched", "queued", "deduplicated", "retried", "dead"],
                [
                    [
                        r.name,
                        *(str(v) for v in (r.matched, r.queued, r.deduplicated, r.retried, r.dead)),
                    ]
                    for r in s.rules
                ],
            )
        )
        blocks.append(
            _table(
                "targets",
                ["target", "kind", "depth", "delayed", "dead-lettered"],
                [
                    [t.key, t.kind, str(t.depth), _opt(t.delayed), _opt(t.dead_lettered)]
                    for t in s.targets
                ],
            )
        )
        if s.sets:
            blocks.append(
                _table(
                    "dedup sets",
                    ["set", "entries", "oldest entry"],
                    [[d.key, str(d.size), _age(d.oldest_age_s)] for d in s.sets],
                )
            )
    return Group(*blocks)


def _watcher_table(s: WatcherStatus) -> Table:
    c = s.counters
    rows = [
        ["input depth", str(s.depth)],
        ["in flight", str(s.in_flight)],
        ["dead-lettered (list)", str(s.dead_letter)],
        ["unmatched (counted)", str(c["unmatched"])],
    ]
    if s.unmatched_kept is not None:
        rows.append(["unmatched (kept)", str(s.unmatched_kept)])
    rows += [[name, str(c[name])] for name in ("events", "queued", "deduplicated", "retried")]
    if s.more_keys:
        rows.append(["templates with more keys", ", ".join(s.more_keys)])
    return _table(f"watcher {s.input}", ["", "value"], rows)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)

"""``status``: what the pipelines hold right now, as tables, JSON, or a live view.

``--watch`` outlives Redis outages: the view says the figures are stale and keeps trying
(``--json`` lines pause, with one line on stderr per outage). Only the first read must
succeed: an unreachable Redis at start exits 1.

Over ~250 lines on purpose: the table, JSON and live views of one command share their
columns and their handling of outages.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from functools import partial

import click
import redis
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..ops.status import WatcherStatus, as_json, gather
from ..rules.ruleset import RuleSet
from ..store.masking import scrub
from . import main
from .common import (
    EXIT_FAILED,
    app_option,
    fail,
    load,
    optional_config_argument,
    redis_url_option,
    safe_url,
)
from .joins_table import joins_table
from .servers import Server, namespace_for, servers_for
from .tables import age as _age
from .tables import table as _table

#: Reads every watcher's status once (raises :class:`Unreachable`).
Reader = Callable[[], list[WatcherStatus]]


@main.command()
@optional_config_argument
@app_option
@redis_url_option
@click.option(
    "--json",
    "as_json_output",
    is_flag=True,
    help="Print JSON for scripts (with --watch: one compact line per refresh).",
)
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C, riding out Redis outages.")
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
    loaded = load(config, app)
    read = partial(_gather, loaded.ruleset, servers_for(loaded, redis_url), namespace_for(loaded))
    try:
        statuses = read()
    except Unreachable as e:
        fail(str(e), EXIT_FAILED)
    try:
        if not watch and as_json_output:
            click.echo(json.dumps(as_json(statuses), indent=2))
        elif not watch:
            Console().print(render(statuses))
        elif as_json_output:
            _watch_json(read, interval_s, statuses)
        else:
            _watch_tables(read, interval_s, statuses)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --watch ends: exit 0


class Unreachable(Exception):
    """Raised when a watcher's Redis cannot be read (the message masks the password)."""


def _gather(
    ruleset: RuleSet, servers: Sequence[Server], namespace: str | None
) -> list[WatcherStatus]:
    """Every watcher's status, each read from its own Redis (``servers[i]``)."""
    statuses: list[WatcherStatus] = []
    for i, server in enumerate(servers):
        one = dataclasses.replace(ruleset, watchers=(ruleset.watchers[i],))
        url = server.url
        client = server.connect()
        try:
            found = gather(one, client, namespace=namespace)
        except redis.RedisError as e:
            raise Unreachable(f"Redis at {safe_url(url)} unreachable: {_masked(e, url)}") from None
        finally:
            client.close()
        statuses += [dataclasses.replace(s, redis=safe_url(url)) for s in found]
    return statuses


def _masked(error: Exception, url: str) -> str:
    """``error`` as text, the URL's password masked should the message ever hold it."""
    return scrub(f"{type(error).__name__}: {error}", url)


def _watch_json(read: Reader, interval_s: float, statuses: list[WatcherStatus]) -> None:
    """One JSON line per refresh; during an outage, no lines and one error on stderr."""
    click.echo(json.dumps(as_json(statuses)))
    told = False
    while True:
        time.sleep(interval_s)
        try:
            statuses = read()
        except Unreachable as e:
            if not told:
                click.echo(f"error: {e}; retrying every {interval_s:g} s", err=True)
            told = True
            continue
        told = False
        click.echo(json.dumps(as_json(statuses)))


def _watch_tables(read: Reader, interval_s: float, statuses: list[WatcherStatus]) -> None:
    """The tables, redrawn in place; during an outage, the last figures under a warning."""
    read_at = time.strftime("%H:%M:%S")
    with Live(render(statuses), console=Console(), auto_refresh=False) as live:
        while True:
            time.sleep(interval_s)
            try:
                statuses = read()
            except Unreachable as e:
                warning = f"{e}; figures from {read_at}, retrying every {interval_s:g} s"
                live.update(Group(Text(warning, style="bold red"), render(statuses)), refresh=True)
                continue
            read_at = time.strftime("%H:%M:%S")
            live.update(render(statuses), refresh=True)


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
                    if t.problem is None
                    else [t.key, t.kind, t.problem, "-", "-"]
                    for t in s.targets
                ],
            )
        )
        if s.sets:
            blocks.append(
                _table(
                    "dedup sets",
                    ["set", "entries", "oldest entry"],
                    [
                        [d.key, str(d.size), _age(d.oldest_age_s)]
                        if d.problem is None
                        else [d.key, d.problem, "-"]
                        for d in s.sets
                    ],
                )
            )
        if s.schedules:
            blocks.append(_schedules_table(s))
        if s.joins:
            blocks.append(joins_table(s.joins))
    return Group(*blocks)


def _schedules_table(s: WatcherStatus) -> Table:
    return _table(
        "schedules",
        ["schedule", "when", "target", "last tick", "fired", "lag", "next tick", "in"],
        [
            [
                c.name,
                f"{c.when} ({c.timezone})",
                c.target,
                c.problem or c.last_tick_local or "never",
                "-" if c.last_fired_age_s is None else f"{_age(c.last_fired_age_s)} ago",
                "-" if c.lag_s is None else f"{c.lag_s * 1000:.0f} ms",
                c.next_tick_local or "-",
                _age(c.next_in_s),
            ]
            for c in s.schedules
        ],
    )


def _watcher_table(s: WatcherStatus) -> Table:
    c = s.counters
    rows = [
        ["input depth", str(s.depth)],
        ["in flight", str(s.in_flight)],
        ["dead-lettered (list)", str(s.dead_letter)],
        ["unmatched (counted)", str(c["unmatched"])],
        ["not written (leaf)", str(c["leaf"])],
    ]
    if s.unmatched_kept is not None:
        rows.append(["unmatched (kept)", str(s.unmatched_kept)])
    if s.cluster or s.outbox:
        oldest = f", oldest {_age(s.outbox_oldest_age_s)}" if s.outbox else ""
        rows.append(["outbox (cluster)", f"{s.outbox}{oldest}"])
    rows += [
        [name, str(c[name])] for name in ("events", "queued", "deduplicated", "retried", "dead")
    ]
    rows += [[f"keys of {t}", f"{n} more not shown"] for t, n in s.more_keys.items()]
    rows += [[f"keys of {t}", "any name (only variables): not listed"] for t in s.dynamic]
    rows += [["odd key", odd] for odd in s.odd_keys]
    rows.append(["keyspace layout", "not recorded" if s.layout is None else str(s.layout)])
    if s.redis:
        rows.insert(0, ["redis", s.redis])
    return _table(f"watcher {s.input}", ["", "value"], rows)


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)

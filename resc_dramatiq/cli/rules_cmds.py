"""``check`` and ``explain``: the rules, without Redis."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import click

from ..errors import ConfigError
from ..rules.data import hidden_fields
from ..rules.explain import explain_event, explain_schedules, format_report, format_schedules
from ..rules.fetch import check_headers
from ..rules.joins import describe_join
from ..rules.schedules import compile_schedules
from ..store.connect import is_cluster
from ..store.joins import join_warnings
from ..store.keys import DramatiqKeys
from ..store.slots import done_list_problems, key_slot, make_slot
from ..store.urls import is_cluster_url
from ..worker.completion import Completion
from . import main
from .common import (
    Loaded,
    app_option,
    config_or_argument,
    fail,
    load,
    load_rules,
    optional_config_argument,
    redis_url_option,
)
from .servers import namespace_for, servers_for


@main.command()
@optional_config_argument
@app_option
@redis_url_option
def check(config: str | None, app: str | None, redis_url: str | None) -> None:
    """Validate CONFIG (and --app's code rules) and summarize watchers, rules and targets.

    Watchers on a Redis Cluster (a ``redis+cluster://`` URL in CONFIG or --redis-url)
    are checked for a key layout the cluster can serve, and so are the done and failure
    lists of --app's workers on a cluster (the broker's, or --redis-url). Nothing connects
    to Redis.
    """
    loaded = load(config, app)
    ruleset = loaded.ruleset
    servers = servers_for(loaded, redis_url)  # refuses a cluster layout it cannot serve
    _refuse_unwritable_lists(loaded, redis_url)
    try:
        check_headers(ruleset, None)
    except ConfigError as e:
        fail(str(e))
    try:  # the secrets may live only where the router runs: say so, do not fail
        check_headers(ruleset, os.environ)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(
                f"warning: {problem} here; the router will refuse to start without it", err=True
            )
    click.echo(f"{config or app}: valid")
    hidden = [w for watcher in ruleset.watchers for r in watcher.rules for w in hidden_fields(r)]
    for warning in join_warnings(ruleset) + hidden:
        click.echo(f"warning: {warning}", err=True)
    dramatiq = DramatiqKeys(namespace_for(loaded) or ruleset.config.spec.namespace)
    for watcher, server in zip(ruleset.watchers, servers, strict=True):
        spec = watcher.spec
        home = key_slot(spec.input_queue) if is_cluster_url(server.url) else None
        slot = "" if home is None else f", cluster slot {home}"
        click.echo(
            f"watcher {spec.input_queue!r} (taken {spec.taken_queue!r}, "
            f"dead {spec.dead_queue!r}{slot}{', reads envelopes' if spec.data else ''})"
        )
        for rule in watcher.rules:
            click.echo(f"  rule {rule.name!r} on /{rule.pattern.pattern}/")
            if rule.join is not None:
                click.echo(f"    {describe_join(rule.join)}")
            for make in rule.makes:
                target = make.target
                kind = f"actor {target.actor}" if target.actor else "list"
                dedup = f", set {make.set.source}" if make.set else ""
                click.echo(f"    {make.task.source} -> {kind} {target.queue.source}{dedup}")
                if home is not None:
                    click.echo(f"      keys in {make_slot(make, dramatiq, home)}")
    for schedule in compile_schedules(ruleset.config):
        when = schedule.spec.cron or f"every {schedule.spec.every_s} s"
        kind = f"actor {schedule.actor}" if schedule.actor else "list"
        click.echo(
            f"schedule {schedule.name!r} {when} ({schedule.spec.timezone}): "
            f"{schedule.event.source} -> {kind} {schedule.queue}"
        )


def _refuse_unwritable_lists(loaded: Loaded, redis_url: str | None) -> None:
    """Exit 2 naming the done and failure lists the app's workers could not write to on
    their Redis Cluster (a worker refuses to boot with them: see ``worker.done_lists``)."""
    app = loaded.app
    if app is None:
        return
    for completion in (m for m in app.broker.middleware if isinstance(m, Completion)):
        client = completion.client or getattr(app.broker, "client", None)
        if not (is_cluster(client) or (redis_url is not None and is_cluster_url(redis_url))):
            continue
        problems = done_list_problems(completion.written_lists(app.broker))
        if problems:
            listed = "\n  ".join(problems)
            fail(f"on a Redis Cluster the workers cannot write these lists:\n  {listed}")


@main.command()
@optional_config_argument
@click.argument("events", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@app_option
@click.option(
    "--schedules", "schedules", is_flag=True, help="Preview the next firings of the schedules."
)
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="With --schedules: start after TIME (ISO 8601, UTC unless it says; or unix seconds)."
    " Default: now.",
)
@click.option(
    "--count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="With --schedules: firings shown per schedule.",
)
@click.option(
    "--data",
    "payload",
    metavar="JSON",
    help="The events' payload, a JSON object, as watchers with data: true read it.",
)
def explain(
    config: str | None,
    events: tuple[str, ...],
    as_json: bool,
    app: str | None,
    schedules: bool,
    at: str | None,
    count: int,
    payload: str | None,
) -> None:
    """Show what the rules of CONFIG make of each EVENT, without Redis.

    With --app, CONFIG may be left out: a first argument that is no file is an EVENT.
    With --schedules, show the next firings of CONFIG's schedules instead.
    With --data, each EVENT carries that payload (docs/data.md).
    """
    config, events = config_or_argument(config, app, events)
    if schedules:
        _explain_schedules(config, app, at, count, as_json)
        return
    if not events:
        fail("give at least one EVENT")
    data = _payload(payload)
    ruleset = load_rules(config, app)
    reports = {event: explain_event(ruleset, event, data) for event in events}
    if as_json:
        click.echo(json.dumps([{"event": e, "matches": r} for e, r in reports.items()], indent=2))
    else:
        click.echo("\n".join(format_report(e, r) for e, r in reports.items()))


def _payload(text: str | None) -> dict[str, Any] | None:
    """``--data``: a JSON object; exit 2 saying why otherwise."""
    if text is None:
        return None
    try:
        found = json.loads(text)
    except ValueError as e:
        fail(f"--data is not JSON: {e}")
    except RecursionError:  # nested past the parser's depth
        fail("--data is not JSON this package reads: nested too deeply")
    if not isinstance(found, dict):
        fail(f"--data is a JSON object ({{...}}), not {type(found).__name__}")
    return found


def _explain_schedules(
    config: str | None, app: str | None, at: str | None, count: int, as_json: bool
) -> None:
    start = int(time.time()) if at is None else _parse_time(at)
    ruleset = load_rules(config, app)
    report = explain_schedules(compile_schedules(ruleset.config), at=start, count=count)
    click.echo(json.dumps(report, indent=2) if as_json else format_schedules(report))


def _parse_time(text: str) -> int:
    """``--at``: unix seconds, or ISO 8601 (UTC when it gives no offset); exit 2 if neither."""
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--at {text!r}: neither ISO 8601 (2026-03-29T01:00+01:00) nor unix seconds")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())

"""``check`` and ``explain``: the rules, without Redis."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import ConfigError
from ..rules.explain import explain_event, format_report
from ..rules.fetch import check_headers
from . import main
from .common import app_option, fail, load_rules, optional_config_argument


@main.command()
@optional_config_argument
@app_option
def check(config: str | None, app: str | None) -> None:
    """Validate CONFIG (and --app's code rules) and summarize watchers, rules and targets."""
    ruleset = load_rules(config, app)
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
    for watcher in ruleset.watchers:
        spec = watcher.spec
        click.echo(
            f"watcher {spec.input_queue!r} (taken {spec.taken_queue!r}, dead {spec.dead_queue!r})"
        )
        for rule in watcher.rules:
            click.echo(f"  rule {rule.name!r} on /{rule.pattern.pattern}/")
            for make in rule.makes:
                target = make.target
                kind = f"actor {target.actor}" if target.actor else "list"
                dedup = f", set {make.set.source}" if make.set else ""
                click.echo(f"    {make.task.source} -> {kind} {target.queue.source}{dedup}")


@main.command()
@optional_config_argument
@click.argument("events", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@app_option
def explain(config: str | None, events: tuple[str, ...], as_json: bool, app: str | None) -> None:
    """Show what the rules of CONFIG make of each EVENT, without Redis.

    With --app, CONFIG may be left out: a first argument that is no file is an EVENT.
    """
    if app is not None and config is not None and not Path(config).is_file():
        events = (config, *events)
        config = None
    if not events:
        fail("give at least one EVENT")
    ruleset = load_rules(config, app)
    reports = {event: explain_event(ruleset, event) for event in events}
    if as_json:
        click.echo(json.dumps([{"event": e, "matches": r} for e, r in reports.items()], indent=2))
    else:
        click.echo("\n".join(format_report(e, r) for e, r in reports.items()))

"""``check`` and ``explain``: the rules, without Redis."""

from __future__ import annotations

import json

import click

from ..explain import explain_event, format_report
from . import main
from .common import config_argument, load_rules


@main.command()
@config_argument
def check(config: str) -> None:
    """Validate CONFIG and summarize its watchers, rules and targets."""
    ruleset = load_rules(config)
    click.echo(f"{config}: valid")
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
@config_argument
@click.argument("events", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def explain(config: str, events: tuple[str, ...], as_json: bool) -> None:
    """Show what the rules of CONFIG make of each EVENT, without Redis."""
    ruleset = load_rules(config)
    reports = {event: explain_event(ruleset, event) for event in events}
    if as_json:
        click.echo(json.dumps([{"event": e, "matches": r} for e, r in reports.items()], indent=2))
    else:
        click.echo("\n".join(format_report(e, r) for e, r in reports.items()))

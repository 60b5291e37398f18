"""The ``resc-dramatiq`` command line: a thin click layer over the library."""

from __future__ import annotations

import json
import sys

import click

from .config import Config
from .errors import ConfigError
from .explain import explain_event, format_report
from .rules import RuleSet

EXIT_INVALID = 2


def load_rules(config_path: str) -> RuleSet:
    """Load and compile a config, printing its warnings; exit 2 with the problems."""
    try:
        config = Config.load(config_path)
        for warning in config.warnings:
            click.echo(f"warning: {warning}", err=True)
        return RuleSet.compile(config)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INVALID)


config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="resc-dramatiq")
def main() -> None:
    """Rule-based task generation for Dramatiq fleets: when X is done, queue Y, once."""


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


if __name__ == "__main__":  # pragma: no cover
    main()

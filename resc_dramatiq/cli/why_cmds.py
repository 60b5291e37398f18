"""``why TASK|MESSAGE_ID``: the causes of a task or a message, back to its root.

Reads the lineage records of the watchers (``lineage: true``, docs/lineage.md) on each
watcher's Redis; each step's status is read now. Exit 1 when no watcher holds a record
of it, 2 for a malformed question (empty, too long) or config.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..config.model import WatcherSpec
from ..ops.why import Chain, Step, WhyError, why
from . import main
from .common import EXIT_FAILED, config_or_argument, fail, load, reaching, watchers_option
from .servers import Server, namespace_for, servers_for


@main.command("why")
@watchers_option
@click.argument("asked", metavar="TASK|MESSAGE_ID", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def why_command(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    asked: str | None,
    as_json: bool,
) -> None:
    """Why TASK (a task string) or MESSAGE_ID exists: the rule, event and message that
    made it, and theirs, back to the root, each with its status now (queued, delayed,
    running, done, dead, taken, unknown)."""
    config, given = config_or_argument(config, app, () if asked is None else (asked,))
    if not given:
        fail("give a TASK or a MESSAGE_ID")
    loaded = load(config, app)
    namespace = namespace_for(loaded) or loaded.ruleset.config.spec.namespace
    pairs = zip(loaded.ruleset.watchers, servers_for(loaded, redis_url), strict=True)
    by_server: dict[Server, list[WatcherSpec]] = {}
    for rules, server in pairs:
        if watcher in (None, rules.spec.input_queue):
            by_server.setdefault(server, []).append(rules.spec)
    chain: Chain | None = None
    for server, specs in by_server.items():
        try:
            with reaching(server.url):
                chain = why(server.connect(), specs, namespace, given[0])
        except WhyError as e:
            fail(str(e))
        if chain is not None:
            break
    if chain is None:
        fail(
            f"no lineage record of {given[0]!r}: lineage or its records are off for its "
            "watcher, the record expired, or no rule made it",
            EXIT_FAILED,
        )
    if as_json:
        data = {"asked": given[0], "steps": [asdict(s) for s in chain.steps]}
        click.echo(json.dumps(data | {"notes": chain.notes, "odd_keys": chain.odd}, indent=2))
        return
    for line in describe(chain):
        click.echo(line)


def describe(chain: Chain) -> list[str]:
    """The chain as text, one block per step, the asked first."""
    lines = []
    for i, step in enumerate(chain.steps, 1):
        lines.append(f"{i}. {_head(step)}")
        lines += [f"   {line}" for line in _details(step)]
    lines += [f"note: {n}" for n in chain.notes]
    lines += [f"odd key: {o}" for o in chain.odd]
    return lines


def _head(step: Step) -> str:
    if step.kind == "event":
        return f"event {step.name!r}: the root, pushed from outside onto {step.watcher!r}"
    what = "message" if step.kind == "message" else "task"
    return f"{what} {step.name if step.kind == 'message' else repr(step.name)}: {step.status}"


def _details(step: Step) -> list[str]:
    if step.kind == "event":
        return []
    if step.rule is None:
        return ["no rule made it (your code sent it): the root"]
    target = f"list {step.queue!r}"
    if step.actor:
        target = f"actor {step.actor!r} on queue {step.queue!r}"
    found = [f"task {step.task!r} to {target}"] if step.kind == "message" else [f"to {target}"]
    made = f"made by rule {step.rule!r} of watcher {step.watcher!r}"
    found.append(f"{made} from event {step.event!r}")
    if step.members:
        found.append(f"join members: {', '.join(step.members)}")
    if step.trace:
        found.append(f"trace {step.trace}")
    return found

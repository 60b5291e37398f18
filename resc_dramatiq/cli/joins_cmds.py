"""``joins list|show|complete|drop``: the open join groups, one group, and an operator's
hand on a stuck one (fire its make now, or close it without firing), each atomic.

A group is looked for under the join keys of each watcher with a join rule (``--watcher``
chooses one): the first watcher whose join rule the group names is the one that completes
it. See docs/joins.md, "Operations".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import click
import redis

from ..errors import RuleError, WrongType
from ..ops.join_status import JoinStatus, join_status
from ..ops.odd_keys import Reads
from ..rules.model import WatcherRules
from ..rules.plan import Planner
from ..store.join_ops import Action, GroupNotOpen, GroupState, close_read, planned, read_group
from ..store.joins import JoinKeys
from ..store.keys import DramatiqKeys, WatcherKeys
from . import main
from .common import (
    EXIT_FAILED,
    config_or_argument,
    fail,
    load,
    reaching,
    watchers_option,
)
from .joins_table import deadline, describe
from .servers import Server, namespace_for, servers_for
from .tables import age


@dataclass(frozen=True, slots=True)
class JoinWatcher:
    """A watcher with join rules, and the Redis it lives on."""

    rules: WatcherRules
    server: Server

    @property
    def join_rules(self) -> set[str]:
        return {r.name for r in self.rules.rules if r.join is not None and not r.join.fail}


@main.group()
def joins() -> None:
    """The join groups: open ones per join rule, one group, completing or dropping one."""


_group = click.argument("group", metavar="GROUP", required=False)


def _watchers(
    config: str | None, app: str | None, redis_url: str | None, watcher: str | None
) -> tuple[list[JoinWatcher], DramatiqKeys, str | None]:
    """The watchers with join rules chosen, the Dramatiq keys and the listener channel."""
    loaded = load(config, app)
    pairs = zip(loaded.ruleset.watchers, servers_for(loaded, redis_url), strict=True)
    found = [JoinWatcher(w, s) for w, s in pairs if watcher in (None, w.spec.input_queue)]
    chosen = [w for w in found if w.join_rules]
    if not chosen:
        where = "" if watcher is None else f" watched from {watcher!r}"
        fail(f"no join rule in a watcher{where}")
    spec = loaded.ruleset.config.spec
    namespace = namespace_for(loaded) or spec.namespace
    return chosen, DramatiqKeys(namespace), spec.listener_channel


@joins.command("list")
@watchers_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_command(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Per join rule: its open groups (the oldest LIMIT, members seen of expected), the
    next deadline and the join counters."""
    chosen, _, _ = _watchers(config, app, redis_url, watcher)
    out: list[tuple[JoinWatcher, list[JoinStatus], list[str]]] = []
    for w in chosen:
        client = w.server.connect()
        with reaching(w.server.url):
            seconds, micros = client.time()
            reads = Reads(client)
            stats = reads.counters(WatcherKeys.of(w.rules.spec, "").stats)
            found = join_status(w.rules, reads, stats, seconds + micros / 1e6, oldest=limit)
        out.append((w, found, [str(o) for o in reads.odd]))
    if as_json:
        data = [
            {"watcher": w.rules.spec.input_queue, "rules": [asdict(j) for j in js], "odd_keys": o}
            for w, js, o in out
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for w, found, odd in out:
        click.echo(f"watcher {w.rules.spec.input_queue!r}")
        for j in found:
            c = j.counters
            due = deadline(j.next_deadline_in_s)
            click.echo(
                f"  join rule {j.rule!r}: {j.open} open, next deadline {due}"
                f"; completed {c['completed']}, expired {c['expired']}, dropped {c['dropped']},"
                f" late {c['late']}"
            )
            for g in j.oldest:
                expect = "?" if g.expect is None else g.expect
                due = "" if g.due_in_s is None else f", deadline {deadline(g.due_in_s)}"
                click.echo(f"    {g.name}  {g.seen} of {expect}, first {age(g.age_s)} ago{due}")
        for o in odd:
            click.echo(f"  odd key {o}", err=True)


@joins.command()
@watchers_option
@_group
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    group: str | None,
    as_json: bool,
) -> None:
    """Show GROUP: its state, join rule, members seen, expected and missing, first
    member's time and deadline (exit 1 when there is no such group)."""
    config, name = _named(config, app, group)
    chosen, _, _ = _watchers(config, app, redis_url, watcher)
    w, state, client = _find(chosen, name)
    seconds, _ = client.time()
    if as_json:
        data = asdict(state) | {"event": state.event.decode("utf-8", "replace")}
        click.echo(json.dumps(data | {"missing": list(state.missing), "now": seconds}, indent=2))
        return
    for line in describe(state, seconds, w.rules.spec.input_queue):
        click.echo(line)


@joins.command()
@watchers_option
@_group
@click.option("--dry-run", is_flag=True, help="Show the tasks it would queue; change nothing.")
def complete(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    group: str | None,
    dry_run: bool,
) -> None:
    """Fire GROUP's join make now, made from its first member's variables, and close it
    (exit 1, nothing written, when it is not open)."""
    _close("complete", (config, app, redis_url, watcher), group, dry_run)


@joins.command()
@watchers_option
@_group
def drop(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    group: str | None,
) -> None:
    """Close GROUP without firing anything: its late members do nothing for its ttl_s
    (exit 1, nothing written, when it is not open)."""
    _close("drop", (config, app, redis_url, watcher), group, False)


def _close(
    action: Action,
    where: tuple[str | None, str | None, str | None, str | None],
    group: str | None,
    dry_run: bool,
) -> None:
    config, app, redis_url, watcher = where
    config, name = _named(config, app, group)
    chosen, dramatiq, channel = _watchers(config, app, redis_url, watcher)
    w, state, client = _find(chosen, name)
    planner = Planner(w.rules)
    try:
        with reaching(w.server.url):
            if dry_run:
                if state.state != "open":
                    raise GroupNotOpen(f"group {name!r} is not open: it is {state.state}")
                for task in planned(planner, state):
                    click.echo(f"would queue {task.task.decode()!r} to {task.queue!r}")
                return
            closed = close_read(client, planner, state, action, dramatiq=dramatiq, channel=channel)
    except (GroupNotOpen, RuleError, WrongType) as e:
        fail(f"{e} (nothing written)", EXIT_FAILED)
    if action == "drop":
        click.echo(f"group {name!r} dropped: nothing queued")
        return
    tasks = ", ".join(repr(t) for t in closed.tasks) or "no task"
    click.echo(f"group {name!r} completed: {closed.queued} queued of {tasks}")


def _named(config: str | None, app: str | None, group: str | None) -> tuple[str | None, str]:
    config, given = config_or_argument(config, app, () if group is None else (group,))
    if not given:
        fail("give a GROUP (the name its join's group template gave)")
    return config, given[0]


def _find(chosen: list[JoinWatcher], name: str) -> tuple[JoinWatcher, GroupState, redis.Redis]:
    """The watcher whose join rule group ``name`` names (the first one that holds it when
    it is closed, or has no member yet); exit 1 when no watcher's Redis holds it."""
    fallback: tuple[JoinWatcher, GroupState, redis.Redis] | None = None
    for w in chosen:
        client = w.server.connect()
        try:
            with reaching(w.server.url):
                state = read_group(client, JoinKeys.of(w.rules.spec.input_queue), name)
        except WrongType as e:
            fail(str(e), EXIT_FAILED)
        if state.state == "open" and state.rule in w.join_rules:
            return w, state, client
        if state.state and fallback is None:
            fallback = w, state, client
    if fallback is None:
        fail(f"no join group {name!r}: not open, and no tombstone left", EXIT_FAILED)
    return fallback

"""``dead list|requeue|drop``: the watchers' dead letters, read, put back in line, removed.

Dramatiq's own dead-lettered messages are in :mod:`.dead_messages_cmds`.

Over ~250 lines on purpose: three subcommands that share their options and output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import click
import redis

from ..errors import WrongType
from ..ops import dead as letters
from ..ops.dead import ALL, DeadLetter
from ..rules.patterns import Pattern, PatternError, compile_pattern
from ..store.keys import WatcherKeys
from . import main
from .common import (
    EXIT_FAILED,
    config_or_argument,
    fail,
    load,
    reaching,
    stacked,
    utc,
    watchers_option,
)
from .servers import Server, servers_for


@dataclass(frozen=True, slots=True)
class Target:
    """One watcher's keys and the Redis it lives on."""

    keys: WatcherKeys
    server: Server


@main.group()
def dead() -> None:
    """The dead letters of the watchers: events that failed max_attempts times."""


"""The options that say which watchers, on which Redis."""


def targets(
    config: str | None, app: str | None, redis_url: str | None, watcher: str | None
) -> list[Target]:
    """The watchers chosen, with their Redis; an unknown ``--watcher`` exits 2."""
    loaded = load(config, app)
    specs = [w.spec for w in loaded.ruleset.watchers]
    chosen = [
        Target(WatcherKeys.of(spec, ""), server)
        for spec, server in zip(specs, servers_for(loaded, redis_url), strict=True)
        if watcher is None or spec.input_queue == watcher
    ]
    if not chosen:
        known = ", ".join(repr(s.input_queue) for s in specs)
        fail(f"--watcher {watcher!r}: no such watcher; known: {known}")
    return chosen


def compiled(pattern: str | None) -> Pattern | None:
    """``--match`` compiled (RE2: linear time); a regex RE2 cannot run exits 2."""
    if pattern is None:
        return None
    try:
        return compile_pattern(pattern)
    except PatternError as e:
        fail(f"--match {pattern!r}: invalid regex: {e}")


def shown(letter: DeadLetter) -> str:
    """The event as text, or its repr when it is not printable UTF-8."""
    try:
        text = letter.event.decode("utf-8")
    except UnicodeDecodeError:
        return repr(letter.event)
    return text if text.isprintable() else repr(text)


def as_dict(letter: DeadLetter) -> dict[str, Any]:
    """A letter for ``--json``."""
    return {
        "event": letter.text,
        "event_hex": letter.event.hex(),
        "rule": letter.rule,
        "error": letter.error,
        "attempts": letter.attempts,
        "at": letter.at_s,
        "entry": letter.entry.decode("utf-8", "replace"),
        "problem": letter.problem,
    }


@dead.command("list")
@watchers_option
@click.option("--match", "pattern", metavar="REGEX", help="Only events this regex finds.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_command(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    pattern: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Show dead letters, newest first (OFFSET is a position in the list)."""
    match = compiled(pattern)
    out = []
    for t in targets(config, app, redis_url, watcher):
        with reaching(t.server.url):
            page = letters.list_dead(
                t.server.connect(), t.keys, match=match, offset=offset, limit=limit
            )
        out.append((t, page))
    if as_json:
        data = [
            {
                "watcher": t.keys.input,
                "dead_queue": t.keys.dead,
                "size": p.size,
                "next_offset": p.next_offset,
                "letters": [as_dict(x) for x in p.letters],
            }
            for t, p in out
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for t, p in out:
        more = "" if p.next_offset is None else f"; more from --offset {p.next_offset}"
        click.echo(f"{t.keys.dead}: {p.size} dead letters, {len(p.letters)} shown{more}")
        for x in p.letters:
            at = utc(x.at_s)
            tries = f"{x.attempts} attempt{'' if x.attempts == 1 else 's'}"
            click.echo(f"  {at}  {shown(x)}  rule {x.rule!r}, {tries}: {x.error}")
            if x.problem:
                click.echo(f"    malformed entry: {x.problem}")


_selection = stacked(
    click.option("--all", "every", is_flag=True, help="Every dead letter."),
    click.option("--match", "pattern", metavar="REGEX", help="The events this regex finds."),
    click.argument("events", metavar="[EVENT]...", nargs=-1),
    click.option("--dry-run", is_flag=True, help="Count what would be done; change nothing."),
)
"""The options that say which dead letters: all, matching, or these events."""


@dead.command()
@watchers_option
@_selection
def requeue(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    every: bool,
    pattern: str | None,
    events: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Put dead events back on their input list: the router takes them again, with their
    attempts counted afresh. EVENT... come after CONFIG (with --app, CONFIG may be
    left out: a first argument that is no file is an EVENT)."""
    config, events = config_or_argument(config, app, events)
    where = (config, app, redis_url, watcher)
    _move("requeue", where, Selection(every, compiled(pattern), frozenset(events)), dry_run)


@dead.command()
@watchers_option
@_selection
def drop(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    watcher: str | None,
    every: bool,
    pattern: str | None,
    events: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Remove dead letters for good. EVENT... come after CONFIG (with --app, CONFIG may
    be left out: a first argument that is no file is an EVENT)."""
    config, events = config_or_argument(config, app, events)
    where = (config, app, redis_url, watcher)
    _move("drop", where, Selection(every, compiled(pattern), frozenset(events)), dry_run)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a requeue or drop is about."""

    every: bool
    match: Pattern | None
    events: frozenset[str]

    def keeps(self, letter: DeadLetter) -> bool:
        """True when ``letter`` is chosen (by --match, else by its event text)."""
        if self.match is not None:
            return self.match.search(letter.text)
        return letter.text in self.events


def _move(
    action: Literal["requeue", "drop"],
    where: tuple[str | None, str | None, str | None, str | None],
    selection: Selection,
    dry_run: bool,
) -> None:
    given = (selection.every, selection.match is not None, bool(selection.events))
    if sum(given) != 1:
        fail("give exactly one of --all, --match REGEX or EVENT...")
    move = letters.requeue if action == "requeue" else letters.drop
    verb = "requeued" if action == "requeue" else "dropped"
    for t in targets(*where):
        client = t.server.connect()
        try:
            with reaching(t.server.url):
                chosen = ALL if selection.every else letters.select(client, t.keys, selection.keeps)
                malformed = _malformed(client, t.keys, chosen)
                moved = move(client, t.keys, chosen, dry_run=dry_run)
        except WrongType as e:
            fail(f"{t.keys.dead}: {e}", EXIT_FAILED)
        for x in malformed:  # moved all the same: its event is the one the entry names
            click.echo(f"{t.keys.dead}: malformed entry ({x.problem}), event {shown(x)}", err=True)
        click.echo(f"{t.keys.dead}: {moved} {'would be ' if dry_run else ''}{verb}")


def _malformed(
    client: redis.Redis, keys: WatcherKeys, chosen: list[DeadLetter] | Literal["all"]
) -> list[DeadLetter]:
    """The malformed letters among ``chosen`` (among the whole list for all)."""
    if chosen == ALL:
        return letters.select(client, keys, lambda x: bool(x.problem))
    return [x for x in chosen if x.problem]

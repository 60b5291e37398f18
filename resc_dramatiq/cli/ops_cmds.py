"""``listen`` and ``prune``: follow the notifications live, clean the dedup sets."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading

import click
import redis

from ..ops.notifications import follow
from ..store.housekeeping import Pruner
from . import main
from .common import (
    EXIT_FAILED,
    app_option,
    fail,
    load,
    optional_config_argument,
    reaching,
    redis_url_option,
    safe_url,
    setup_logging,
)
from .servers import Server, servers_for


@main.command()
@optional_config_argument
@app_option
@redis_url_option
@click.option("--channel", help="Channel to follow (default: the config's listener_channel).")
@click.option("--count", type=click.IntRange(1), help="Stop after this many lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per notification.")
def listen(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    channel: str | None,
    count: int | None,
    as_json: bool,
) -> None:
    """Print the router's TRIGGER and DONE notifications as they happen, until Ctrl-C.

    Lines are written exactly as resc publishes them: ``<taken> TRIGGER <event> -> <task>``
    and ``<taken> DONE <event>``.
    """
    server = Server(redis_url) if redis_url is not None else None
    if config is not None or app is not None:
        loaded = load(config, app)
        channel = channel or loaded.ruleset.config.spec.listener_channel
        server = servers_for(loaded, redis_url)[0]
    if not channel:
        fail("no channel: give --channel, or a CONFIG with a listener_channel")
    if server is None:
        fail("no Redis: give --redis-url (or RESC_REDIS_URL), a CONFIG or --app")
    setup_logging("warning")
    client = server.connect()
    url = server.url
    out = sys.stdout.buffer
    seen = 0
    try:
        with reaching(url):
            for note in follow(client, channel, threading.Event(), what=safe_url(url)):
                line = json.dumps(note.as_dict()).encode() if as_json else note.raw
                out.write(line + b"\n")
                out.flush()
                seen += 1
                if count is not None and seen >= count:
                    return
    except KeyboardInterrupt:
        return


@main.command()
@optional_config_argument
@app_option
@redis_url_option
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def prune(
    config: str | None, app: str | None, redis_url: str | None, dry_run: bool, as_json: bool
) -> None:
    """Remove dedup entries older than their make's ttl_s, in every set of CONFIG."""
    loaded = load(config, app)
    ruleset = loaded.ruleset
    results = []
    for i, server in enumerate(servers_for(loaded, redis_url)):
        one = dataclasses.replace(ruleset, watchers=(ruleset.watchers[i],))
        try:
            results += Pruner(ruleset=one, client=server.connect()).sweep(dry_run=dry_run)
        except redis.RedisError as e:
            fail(f"Redis at {safe_url(server.url)} unreachable: {type(e).__name__}", EXIT_FAILED)
    unique = {p.set: p for p in results}.values()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(p) for p in unique], indent=2))
        return
    if not unique:
        click.echo("no dedup set has a ttl_s: nothing to prune")
    verb = "would remove" if dry_run else "removed"
    for p in unique:
        oldest = "empty" if p.oldest_age_s is None else f"oldest entry {p.oldest_age_s} s"
        click.echo(f"{p.set}: {verb} {p.removed} older than {p.ttl_s} s; {p.size} left, {oldest}")

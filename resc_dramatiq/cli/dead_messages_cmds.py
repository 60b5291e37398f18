"""``dead messages|messages-requeue|messages-drop``: Dramatiq's own dead-lettered
messages of the queues the rules feed, listed, put back on their queue, removed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import click

from ..errors import WrongType
from ..ops.dead import ALL
from ..ops.dramatiq_dead import (
    DeadMessage,
    drop_messages,
    list_dead_messages,
    requeue_messages,
)
from ..rules.templates import Template
from ..store.keys import DramatiqKeys
from .common import (
    EXIT_FAILED,
    app_option,
    config_or_argument,
    fail,
    load,
    optional_config_argument,
    reaching,
    redis_url_option,
    stacked,
    utc,
)
from .dead_cmds import dead
from .servers import Server, namespace_for, servers_for


@dataclass(frozen=True, slots=True)
class QueueTarget:
    """A Dramatiq queue the rules feed, its namespace and the Redis it lives on."""

    queue: str
    namespace: str
    server: Server

    @property
    def dead(self) -> str:
        """The queue's dead set, to name it in messages."""
        return DramatiqKeys(self.namespace).dead(self.queue)


def queue_targets(
    config: str | None, app: str | None, redis_url: str | None, queues: tuple[str, ...]
) -> list[QueueTarget]:
    """The queues chosen (default: every constant queue an actor target names), each with
    the Redis of the first watcher feeding it; a ``--queue`` no target can name exits 2."""
    loaded = load(config, app)
    namespace = namespace_for(loaded) or loaded.ruleset.config.spec.namespace
    fed: dict[str, Server] = {}  # constant queue -> server
    shapes: list[tuple[Template, Server]] = []  # templated queue -> server
    for rules, server in zip(loaded.ruleset.watchers, servers_for(loaded, redis_url), strict=True):
        for make in (make for rule in rules.rules for make in rule.makes):
            template = make.target.queue
            if make.target.actor is None:
                continue
            if template.is_constant:
                fed.setdefault(template.source, server)
            else:
                shapes.append((template, server))
    chosen: list[QueueTarget] = []
    for queue in queues or tuple(fed):
        found = fed.get(queue) or next((s for t, s in shapes if t.can_render(queue)), None)
        if found is None:
            known = ", ".join(repr(q) for q in fed) or "none"
            fail(f"--queue {queue!r}: no rule feeds it; known: {known}")
        chosen.append(QueueTarget(queue, namespace, found))
    return chosen


_queues = stacked(
    optional_config_argument,
    app_option,
    redis_url_option,
    click.option(
        "--queue",
        "queues",
        metavar="QUEUE",
        multiple=True,
        help="Only this Dramatiq queue; repeatable (default: each constant one rules feed).",
    ),
)
"""The options that say which Dramatiq queues, on which Redis."""


def call_text(message: DeadMessage) -> str:
    """``actor(args, name=value)``, as the message would be called."""
    args = [repr(a) for a in message.args] + [f"{k}={v!r}" for k, v in message.kwargs.items()]
    return f"{message.actor or '?'}({', '.join(args)})"


@dead.command("messages")
@_queues
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def messages_command(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    queues: tuple[str, ...],
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Show Dramatiq's dead-lettered messages of the queues the rules feed, newest first."""
    out = []
    for t in queue_targets(config, app, redis_url, queues):
        with reaching(t.server.url):
            page = list_dead_messages(
                t.server.connect(), t.namespace, t.queue, offset=offset, limit=limit
            )
        out.append((t, page))
    if as_json:
        data = [
            {
                "queue": t.queue,
                "dead_set": t.dead,
                "size": p.size,
                "next_offset": p.next_offset,
                "messages": [_message_dict(m) for m in p.messages],
            }
            for t, p in out
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for t, p in out:
        more = "" if p.next_offset is None else f"; more from --offset {p.next_offset}"
        click.echo(f"{t.dead}: {p.size} dead messages, {len(p.messages)} shown{more}")
        for m in p.messages:
            at = utc(m.dead_at_ms / 1000)
            error = f": {m.error}" if m.error else ""
            click.echo(f"  {at}  {m.redis_id}  {call_text(m)}{error}")


def _message_dict(message: DeadMessage) -> dict[str, Any]:
    """A message for ``--json``."""
    return {
        "redis_id": message.redis_id,
        "actor": message.actor,
        "args": list(message.args),
        "kwargs": message.kwargs,
        "message_id": message.message_id,
        "queue_name": message.queue_name,
        "dead_at_ms": message.dead_at_ms,
        "error": message.error,
        "payload": None if message.payload is None else message.payload.decode("utf-8", "replace"),
    }


_chosen_messages = stacked(
    click.option("--all", "every", is_flag=True, help="Every dead message."),
    click.argument("ids", metavar="[REDIS_ID]...", nargs=-1),
    click.option("--dry-run", is_flag=True, help="Count what would be done; change nothing."),
)
"""The options that say which dead messages: all, or these redis message ids."""


@dead.command("messages-requeue")
@_queues
@_chosen_messages
def messages_requeue(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    queues: tuple[str, ...],
    every: bool,
    ids: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Enqueue dead messages on their queue again (a message whose payload names another
    queue, e.g. one from the delay queue, is skipped). REDIS_ID... come after CONFIG."""
    config, ids = config_or_argument(config, app, ids)
    _move_messages("requeue", (config, app, redis_url, queues), every, ids, dry_run)


@dead.command("messages-drop")
@_queues
@_chosen_messages
def messages_drop(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    queues: tuple[str, ...],
    every: bool,
    ids: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Remove dead messages and their payloads for good. REDIS_ID... come after CONFIG."""
    config, ids = config_or_argument(config, app, ids)
    _move_messages("drop", (config, app, redis_url, queues), every, ids, dry_run)


def _move_messages(
    action: Literal["requeue", "drop"],
    where: tuple[str | None, str | None, str | None, tuple[str, ...]],
    every: bool,
    ids: tuple[str, ...],
    dry_run: bool,
) -> None:
    if every == bool(ids):
        fail("give exactly one of --all or REDIS_ID...")
    move = requeue_messages if action == "requeue" else drop_messages
    verb = "requeued" if action == "requeue" else "dropped"
    for t in queue_targets(*where):
        try:
            with reaching(t.server.url):
                chosen = ALL if every else ids
                done = move(t.server.connect(), t.namespace, t.queue, chosen, dry_run=dry_run)
        except WrongType as e:
            fail(f"{t.dead}: {e}", EXIT_FAILED)
        skipped = f", {done.skipped} skipped (queue_name of another queue)" if done.skipped else ""
        click.echo(f"{t.dead}: {done.moved} {'would be ' if dry_run else ''}{verb}{skipped}")

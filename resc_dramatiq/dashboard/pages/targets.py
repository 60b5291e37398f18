"""Targets: raw lists (depth, a peek at the head) and Dramatiq queues (ready, delayed,
dead-lettered messages with actor, arguments and error).

Only names the watcher's target templates can render are addressed (:func:`named_by`);
a peek reads a few entries, a dead-message page one ``ZREVRANGE`` and one ``HMGET``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.dramatiq_dead import DeadMessage, list_dead_messages, parse
from ...store.keys import DramatiqKeys
from ..context import Context, named_by, now_s
from ..render import int_param
from ..site import WatcherSite

#: Entries shown of a list's head, messages of a queue's head.
PEEK = 5


@dataclass(frozen=True, slots=True)
class Peeked:
    """The head of a raw list: the next entries a worker takes (right end first)."""

    key: str
    entries: tuple[bytes, ...]


def peek_list(client: redis.Redis, key: str, count: int = PEEK) -> tuple[bytes, ...]:
    """The ``count`` entries a ``BRPOPLPUSH`` worker takes next, next one first."""
    found: list[Any] = client.lrange(key, -count, -1)
    return tuple(reversed(found))


def peek_messages(
    client: redis.Redis, keys: DramatiqKeys, queue: str, count: int = PEEK
) -> tuple[DeadMessage, ...]:
    """The first ``count`` messages of Dramatiq ``queue`` (a delay queue name works too),
    read as dead messages are (actor, arguments; no time of death)."""
    ids: list[Any] = client.lrange(keys.queue(queue), 0, count - 1)
    payloads = client.hmget(keys.messages(queue), ids) if ids else []
    return tuple(parse(i, 0, p) for i, p in zip(ids, payloads, strict=True))


def dramatiq_queue(context: Context, w: WatcherSite, name: str) -> str:
    """``name`` when a Dramatiq target of ``w`` renders it; else 404."""
    templates = [m.target.queue for r in w.rules.rules for m in r.makes if m.target.actor]
    if not named_by(name, templates):
        raise HTTPException(404, "no such Dramatiq queue among this watcher's targets")
    return name


def routes(context: Context) -> list[Route]:
    """``/targets`` and ``/watchers/{index}/queue?name=``."""

    def listing(request: Request) -> Response:
        watchers: list[dict[str, Any]] = []
        for i, w in enumerate(context.site.watchers):
            status = context.status(i)
            heads = {t.key: peek_list(w.client, t.key) for t in status.targets if t.kind == "list"}
            watchers.append({"index": i, "status": status, "heads": heads})
        return context.renderer.page(request, "targets.html", {"watchers": watchers})

    def queue(request: Request) -> Response:
        index, w = context.watcher(request)
        name = dramatiq_queue(context, w, request.query_params.get("name", ""))
        keys = context.site.dramatiq
        offset = int_param(request, "offset")
        size = context.settings.page_size
        dead = list_dead_messages(w.client, context.site.namespace, name, offset=offset, limit=size)
        values = {
            "index": index,
            "watcher": w,
            "name": name,
            "ready": w.client.llen(keys.queue(name)),
            "delayed": w.client.llen(keys.delayed(name)),
            "ready_head": peek_messages(w.client, keys, name),
            "delayed_head": peek_messages(w.client, keys, f"{name}.DQ"),
            "dead": dead,
            "offset": offset,
            "now_ms": now_s(w.client) * 1000,
        }
        return context.renderer.page(request, "queue.html", values)

    return [
        Route("/targets", listing, name="targets"),
        Route("/watchers/{index:int}/queue", queue, name="queue"),
    ]

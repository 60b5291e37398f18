"""Targets: raw lists (depth, a peek at the head) and Dramatiq queues (ready, delayed,
dead-lettered messages with actor, arguments and error).

Only names the watcher's target templates can render are addressed (:func:`named_by`),
never by a template that is only variables (it could name any queue) nor a name of
Dramatiq's own keys; a queue whose keys hold other types shows which, and nothing else.
A peek reads a few entries, a dead-message page one ``ZREVRANGE`` and one ``HMGET``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.dramatiq_dead import DeadMessage, DeadMessagePage, list_dead_messages, parse
from ...ops.odd_keys import OddKey, odd_types
from ...ops.target_status import is_dynamic
from ...store.keys import DramatiqKeys, dramatiq_own
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
    fixed = [t for t in templates if not is_dynamic(t)]
    if dramatiq_own(name) or not named_by(name, fixed):
        raise HTTPException(404, "no such Dramatiq queue among this watcher's targets")
    return name


def queue_odd_keys(client: redis.Redis, keys: DramatiqKeys, name: str) -> list[OddKey]:
    """The keys of Dramatiq queue ``name`` that hold another type than Dramatiq's."""
    delayed = f"{name}.DQ"
    return odd_types(
        client,
        {
            keys.queue(name): "list", keys.messages(name): "hash",
            keys.queue(delayed): "list", keys.messages(delayed): "hash",
            keys.dead(name): "zset", keys.dead_messages(name): "hash",
        },
    )  # fmt: skip


def routes(context: Context) -> list[Route]:
    """``/targets`` and ``/watchers/{index}/queue?name=``."""

    def listing(request: Request) -> Response:
        watchers: list[dict[str, Any]] = []
        for i, w in enumerate(context.site.watchers):
            status = context.status(i)
            heads = {
                t.key: peek_list(w.client, t.key)
                for t in status.targets
                if t.kind == "list" and t.problem is None
            }
            watchers.append({"index": i, "status": status, "heads": heads})
        return context.renderer.page(request, "targets.html", {"watchers": watchers})

    def queue(request: Request) -> Response:
        index, w = context.watcher(request)
        name = dramatiq_queue(context, w, request.query_params.get("name", ""))
        keys = context.site.dramatiq
        offset = int_param(request, "offset")
        odd = queue_odd_keys(w.client, keys, name)
        values: dict[str, Any] = {
            "index": index, "watcher": w, "name": name, "offset": offset, "odd": odd,
            "ready": 0, "delayed": 0, "ready_head": (), "delayed_head": (),
            "dead": DeadMessagePage((), 0, None), "now_ms": now_s(w.client) * 1000,
        }  # fmt: skip
        if not odd:  # a queue whose keys hold other types shows which, nothing else
            size = context.settings.page_size
            values |= {
                "ready": w.client.llen(keys.queue(name)),
                "delayed": w.client.llen(keys.delayed(name)),
                "ready_head": peek_messages(w.client, keys, name),
                "delayed_head": peek_messages(w.client, keys, f"{name}.DQ"),
                "dead": list_dead_messages(
                    w.client, context.site.namespace, name, offset=offset, limit=size
                ),
            }
        return context.renderer.page(request, "queue.html", values)

    return [
        Route("/targets", listing, name="targets"),
        Route("/watchers/{index:int}/queue", queue, name="queue"),
    ]

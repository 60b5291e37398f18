"""Processes: router instances per watcher, and Dramatiq worker processes.

Dramatiq's workers beat into ``<ns>:__heartbeats__`` (broker id -> ms); a worker is
alive while its last beat is younger than Dramatiq's heartbeat timeout (60 s by
default). What a worker holds is the size of its acks set per queue the rules feed
(``<ns>:__acks__.<broker id>.<queue>``): messages fetched and not yet acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.odd_keys import OddKey, is_wrong_type, odd_types, wrong_type
from ...rules.messages import delay_queue_name
from ...store.keys import DramatiqKeys
from ...store.keyspace import text
from ..context import Context, now_s

#: Dramatiq's default ``heartbeat_timeout``, in ms.
HEARTBEAT_TIMEOUT_MS = 60_000
#: Most worker processes listed per Redis.
MAX_WORKERS = 200


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One Dramatiq worker process (one broker)."""

    broker_id: str
    beat_age_s: float
    alive: bool
    holds: dict[str, int]  # queue -> messages held


def workers(
    client: redis.Redis, keys: DramatiqKeys, queues: list[str], now: float
) -> tuple[list[WorkerView], int, list[OddKey]]:
    """The most recently beating workers (at most :data:`MAX_WORKERS`), how many there
    are in all, and the odd keys met (a heartbeats key of another type: no worker)."""
    odd = odd_types(client, {keys.heartbeats: "zset"})
    if odd:
        return [], 0, odd
    total = int(client.zcard(keys.heartbeats))
    beats: list[Any] = client.zrevrange(keys.heartbeats, 0, MAX_WORKERS - 1, withscores=True)
    every = [q for queue in queues for q in (queue, delay_queue_name(queue))]
    pipe = client.pipeline(transaction=False)
    for broker_id, _ in beats:
        for q in every:
            pipe.scard(keys.acks(text(broker_id), q))
    sizes = iter(pipe.execute(raise_on_error=False))
    found = []
    for broker_id, beat_ms in beats:
        age = now - float(beat_ms) / 1000
        held = {q: _held(client, keys.acks(text(broker_id), q), next(sizes), odd) for q in every}
        found.append(
            WorkerView(
                text(broker_id),
                round(age, 1),
                age * 1000 < HEARTBEAT_TIMEOUT_MS,
                {q: n for q, n in held.items() if n},
            )
        )
    return found, total, odd


def _held(client: redis.Redis, key: str, size: Any, odd: list[OddKey]) -> int:
    """An acks set's size from a pipeline's reply; 0 for a key of another type (noted)."""
    if not isinstance(size, Exception):
        return int(size)
    if not is_wrong_type(size):
        raise size
    odd.append(wrong_type(client, key, "set"))
    return 0


def routes(context: Context) -> list[Route]:
    """``/processes``."""

    def processes(request: Request) -> Response:
        statuses = [context.status(i) for i in range(len(context.site.watchers))]
        fleets: dict[str, dict[str, Any]] = {}  # Redis label -> its workers
        for w, status in zip(context.site.watchers, statuses, strict=True):
            fleet = fleets.setdefault(w.redis_label, {"client": w.client, "queues": []})
            fleet["queues"] += [t.key for t in status.targets if t.kind == "dramatiq"]
        shown = {}
        for label, fleet in fleets.items():
            queues = sorted(set(fleet["queues"]))
            found, total, odd = workers(
                fleet["client"], context.site.dramatiq, queues, now_s(fleet["client"])
            )
            shown[label] = {"workers": found, "total": total, "odd": odd}
        values = {"statuses": statuses, "watchers": context.site.watchers, "fleets": shown}
        return context.renderer.page(request, "processes.html", values)

    return [Route("/processes", processes, name="processes")]

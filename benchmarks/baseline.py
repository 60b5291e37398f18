"""resc's algorithm, as a small reference: one event at a time, one round trip per step.

For each event resc does ``BRPOPLPUSH input taken``, matches its rules in the process,
and for each task ``ZSCORE set task`` then (when absent) ``ZADD set now task`` and
``LPUSH queue task``, and finally ``LREM taken 1 event``: five round trips per event
that makes one deduplicated task.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import redis


@dataclass(frozen=True, slots=True)
class RescRule:
    """One rule: a regex with named groups, a task template, a target list, a dedup set."""

    pattern: re.Pattern[str]
    task: str  # str.format-style with the group names, e.g. "trt/{process_id}/{product_id}"
    queue: str
    set: str


def run_resc_loop(
    client: redis.Redis, *, input_queue: str, taken_queue: str, rule: RescRule, events: int
) -> float:
    """Process ``events`` events the way resc does; return the seconds it took."""
    started = time.perf_counter()
    for _ in range(events):
        event = client.brpoplpush(input_queue, taken_queue, timeout=1)
        if event is None:
            raise RuntimeError(f"{input_queue!r} ran dry before {events} events")
        text = event.decode() if isinstance(event, bytes) else str(event)
        m = rule.pattern.search(text)
        if m is not None:
            task = rule.task.format(**m.groupdict())
            if client.zscore(rule.set, task) is None:
                client.zadd(rule.set, {task: int(time.time())})
                client.lpush(rule.queue, task)
        client.lrem(taken_queue, 1, text)
    return time.perf_counter() - started

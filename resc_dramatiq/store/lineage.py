"""Where the scripts that queue tasks keep their lineage records (docs/lineage.md).

A watcher with ``lineage`` on keeps a record of every task queued for it, whichever
script queues it: its router's and its workers' commits (``commit.lua``), a join's
make fired by a deadline round (``expire.lua``) or by an operator (``join_close.lua``),
a schedule's actor tick (``fire.lua``). :class:`LineageBucket` is where they go now:
the bucket of the moment, how long it lives after a write, how many fields it takes.
:func:`tasks_header` and :func:`lineage_header` are what a script's header says of
it; each script keeps the records with ``library.lua``'s ``lineage``, one copy of the
bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config.model import WatcherSpec
from ..rules.batch import PlannedTask
from .keys import LINEAGE_BUCKETS, DramatiqKeys, WatcherKeys, lineage_span_ms
from .tasks import KeyList, Records, task_rows


@dataclass(frozen=True, slots=True)
class LineageBucket:
    """The hash a script writes its lineage records to."""

    key: str
    #: how long the hash lives after a write (ms): the ttl and one bucket's span
    expiry_ms: int
    #: most fields the hash takes: an eighth of the watcher's ``max_records``
    most: int

    @classmethod
    def at(cls, keys: WatcherKeys, ttl_ms: int, max_records: int, now_ms: int) -> LineageBucket:
        """The bucket of watcher ``keys`` at ``now_ms`` (records kept ``ttl_ms``)."""
        return cls(
            keys.lineage_at(now_ms, ttl_ms),
            ttl_ms + lineage_span_ms(ttl_ms),
            -(-max_records // LINEAGE_BUCKETS),
        )

    @classmethod
    def of(cls, spec: WatcherSpec, now_ms: int) -> LineageBucket | None:
        """The bucket of the watcher ``spec`` at ``now_ms``; None when it keeps no lineage."""
        kept = spec.kept_lineage
        if kept is None:
            return None
        return cls.at(WatcherKeys.of(spec, ""), kept.ttl_s * 1000, kept.max_records, now_ms)


def tasks_header(
    tasks: Sequence[PlannedTask],
    keys: KeyList,
    dramatiq: DramatiqKeys,
    event: Callable[[PlannedTask], Any],
    bucket: LineageBucket | None,
) -> dict[str, Any]:
    """The fields of a script's header (``expire.lua``, ``join_close.lua``) that give
    its planned ``tasks`` (rows of :func:`.tasks.task_rows`, their keys added to
    ``keys``) and say where their lineage records go: see :func:`lineage_header`."""
    records: Records = [] if bucket is not None else None
    rows = task_rows(tasks, keys, dramatiq, event, records=records)
    return {"tasks": rows, **lineage_header(bucket, keys, records)}


def lineage_header(bucket: LineageBucket | None, keys: KeyList, records: Records) -> dict[str, Any]:
    """The fields of a script's header that say where its lineage records go:
    ``lineage_key`` (the bucket's KEYS index, added to ``keys``; 0: none kept),
    ``lineage_ttl_ms``, ``lineage_max`` and ``records`` (field, value pairs; a task row's
    ``T_LINEAGE`` names its first: see :func:`.tasks.task_rows`)."""
    if bucket is None:
        return {"lineage_key": 0, "lineage_ttl_ms": 0, "lineage_max": 0, "records": []}
    return {
        "lineage_key": keys.add(bucket.key),
        "lineage_ttl_ms": bucket.expiry_ms,
        "lineage_max": bucket.most,
        "records": records or [],
    }

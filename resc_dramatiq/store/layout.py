"""The keyspace's layout version, recorded in Redis, so that no process reads data
written in a layout it does not know.

What this package keeps in Redis (commit markers, message markers, outbox entries,
applied markers, counters and history, dead letters, taken lists) has one *layout*.
Releases that keep it run side by side (a fleet upgrades one process at a time); a
release that changes it raises the layout number. The hash :data:`~.keys.LAYOUT_KEY`
says which layouts the keyspace holds:

* ``version``: the newest layout written to this keyspace;
* ``oldest``: the oldest layout whose data may still be there (a dead letter lives until
  someone removes it): a process must read every layout from ``oldest`` to ``version``;
* ``started/<package version>``: the last start of a process of that release, as JSON
  (its layout, the layouts it reads, when, who, on which host): at most
  :data:`MAX_STARTED` releases, the oldest starts forgotten first.

:func:`check_layout` runs when a router starts and when a worker's ``Completion``
boots: an empty keyspace is given this code's layout (``HSETNX``: of two processes
starting at once, one writes it, both read the same), a layout this code cannot read
refuses the start (:class:`~resc_dramatiq.errors.LayoutRefused`, naming what Redis holds,
what this process reads, and what to do). A release that changes the layout will write
``version`` only once every running process reads it (see docs/operations.md,
"Upgrading a running fleet").
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import redis
from redis.cluster import RedisCluster

from ..errors import LayoutRefused
from .keys import LAYOUT_KEY
from .keyspace import text
from .resilience import is_transient, why

#: The layout this code writes.
LAYOUT = 1
#: The layouts this code reads.
READS = range(1, 2)
#: Most releases remembered in ``started/<package version>`` fields.
MAX_STARTED = 16

STARTED = "started/"
UPGRADE_DOC = 'docs/operations.md, "Upgrading a running fleet"'


def package_version() -> str:
    """This package's version, as installed."""
    try:
        return metadata.version("resc-dramatiq")
    except metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown"


@dataclass(frozen=True, slots=True)
class Layout:
    """What the layout hash says (None: a field not written)."""

    version: int | None
    oldest: int | None
    #: package version -> the fields of its last start (``layout``, ``reads``, ``at``...)
    started: dict[str, dict[str, Any]] = field(default_factory=dict)

    def needs(self) -> range:
        """The layouts a process must read to work on this keyspace."""
        if self.version is None:
            return range(0)
        oldest = self.version if self.oldest is None else self.oldest
        return range(min(oldest, self.version), self.version + 1)

    def readable_by(self, reads: range) -> bool:
        """True when a process reading ``reads`` can read every layout this keyspace holds."""
        return all(v in reads for v in self.needs())

    def describe(self) -> str:
        """The layouts held and the releases started, for people."""
        if self.version is None:
            return "no layout recorded"
        held = f"layout {self.version}"
        if self.oldest is not None and self.oldest != self.version:
            held = f"layouts {self.oldest} to {self.version}"
        starts = sorted(self.started.items(), key=lambda kv: -_number(kv[1].get("at")))
        if not starts:
            return held
        releases = "; ".join(f"resc-dramatiq {v} ({_started(s)})" for v, s in starts)
        return f"{held}; started there: {releases}"


def read_layout(client: redis.Redis | RedisCluster) -> Layout:
    """The layout hash as it is (nothing written; raises ``LayoutRefused`` when it holds
    something this code cannot read, Redis errors as they come)."""
    return _parse(_hgetall(client, client.hgetall))


def check_layout(client: redis.Redis | RedisCluster, who: str) -> Layout:
    """Record this code's layout in an empty keyspace, refuse a layout it cannot read,
    and note this start (``who``: ``router <instance>``, ``worker``...).

    Idempotent, two round trips. Raises :class:`~resc_dramatiq.errors.LayoutRefused`;
    Redis errors (an outage) reach the caller, which retries as it retries the rest.
    """
    pipe = client.pipeline(transaction=False)  # one key: fine on a cluster too
    pipe.hsetnx(LAYOUT_KEY, "version", LAYOUT)
    pipe.hsetnx(LAYOUT_KEY, "oldest", LAYOUT)
    pipe.hgetall(LAYOUT_KEY)
    layout = _parse(_hgetall(client, lambda key: pipe.execute()[-1]))
    mine = package_version()
    if not layout.readable_by(READS):
        raise LayoutRefused(
            f"{who} (resc-dramatiq {mine}) reads {_layouts(READS)}, but Redis holds "
            f"{layout.describe()}. Upgrade this process to a release that reads "
            f"{_layouts(layout.needs())}, or, if the fleet is being upgraded, finish the "
            f"upgrade as {UPGRADE_DOC} says; key {LAYOUT_KEY!r} records the layouts"
        )
    _note_start(client, layout, mine, who)
    return layout


def check_at_boot(client: redis.Redis | RedisCluster, who: str, logger: logging.Logger) -> None:
    """:func:`check_layout` for a worker's boot, which must not wait: a Redis that does
    not answer now is said (WARNING) and the boot goes on, as a worker booting during
    an outage always did; a layout it cannot read raises ``LayoutRefused``."""
    try:
        check_layout(client, who)
    except Exception as e:
        if not is_transient(e):
            raise
        logger.warning("%s: Redis unreachable (%s); layout not checked", who, why(e))


def _note_start(client: redis.Redis | RedisCluster, layout: Layout, mine: str, who: str) -> None:
    """Write ``started/<mine>``; forget the oldest starts beyond :data:`MAX_STARTED`."""
    now = int(time.time())
    record = {
        "layout": LAYOUT,
        "reads": [READS.start, READS.stop - 1],
        "at": now,
        "by": who,
        "host": socket.gethostname(),
    }
    starts = {**layout.started, mine: record}
    by_age = sorted(starts, key=lambda v: _number(starts[v].get("at")))
    stale = [v for v in by_age[: max(0, len(by_age) - MAX_STARTED)] if v != mine]
    pipe = client.pipeline(transaction=False)
    pipe.hset(LAYOUT_KEY, f"{STARTED}{mine}", json.dumps(record))
    if stale:
        pipe.hdel(LAYOUT_KEY, *(f"{STARTED}{v}" for v in stale))
    pipe.execute()


def _hgetall(client: redis.Redis | RedisCluster, read: Any) -> dict[str, str]:
    """The hash's fields as text; a key of another type refuses the start."""
    try:
        fields = read(LAYOUT_KEY)
    except redis.ResponseError as e:
        if "WRONGTYPE" not in str(e):  # a pipeline says "Command # 1 (...) caused error: WRONGTYPE"
            raise
        found = text(client.type(LAYOUT_KEY))
        raise LayoutRefused(
            f"key {LAYOUT_KEY!r} holds a {found}, not the hash of the keyspace's layout "
            f"versions; see {UPGRADE_DOC}"
        ) from None
    return {text(k): text(v) for k, v in fields.items()}


def _parse(fields: dict[str, str]) -> Layout:
    started: dict[str, dict[str, Any]] = {}
    for name, value in fields.items():
        if name.startswith(STARTED):
            try:
                record = json.loads(value)
            except ValueError:
                record = None
            started[name[len(STARTED) :]] = record if isinstance(record, dict) else {}
    return Layout(
        version=_field(fields, "version"), oldest=_field(fields, "oldest"), started=started
    )


def _field(fields: dict[str, str], name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise LayoutRefused(
            f"key {LAYOUT_KEY!r} field {name!r} holds {value[:40]!r}, not a layout "
            f"number; see {UPGRADE_DOC}"
        )
    return int(value)


def _layouts(versions: range) -> str:
    """``layout 1``, ``layouts 1 to 3``."""
    if len(versions) == 1:
        return f"layout {versions.start}"
    return f"layouts {versions.start} to {versions.stop - 1}"


def _started(record: dict[str, Any]) -> str:
    """One release's last start: ``layout 2, reads 1-2, router a on h, at 2025-...``."""
    parts = []
    if "layout" in record:
        parts.append(f"layout {record['layout']}")
    reads = record.get("reads")
    if isinstance(reads, list) and len(reads) == 2:
        low, high = reads
        parts.append(f"reads {low}" if low == high else f"reads {low}-{high}")
    if "by" in record:
        parts.append(f"{record['by']} on {record.get('host', '?')}")
    at = _number(record.get("at"))
    if at:
        parts.append(time.strftime("started %Y-%m-%d %H:%M:%S UTC", time.gmtime(at)))
    return ", ".join(parts) or "no details"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0

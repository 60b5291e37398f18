"""What a rule set's Redis holds right now: the figures behind ``resc-dramatiq status``.

Reads only (no write, no script): per watcher its input depth, the events in flight per
router instance with the age of its heartbeat, dead-letter and unmatched counts, the
router's counters and, on a Redis Cluster, its outbox (the committed batches whose tasks
in other hash slots are not all queued yet: they wait for a router, or for a shard that
cannot be reached); per rule its counters; per target the depth of its list, or of its
Dramatiq queue with the delayed and dead-lettered messages; per dedup set its size and
the age of its oldest entry; the keyspace's layout version (:mod:`~..store.layout`);
per schedule it feeds, its last firing, lag and next firing
(:mod:`.schedule_status`); per join rule its open groups, the oldest of them and the
next deadline (:mod:`.join_status`). Targets and sets named by templates are found with
``SCAN``: the first :data:`MAX_KEYS` names in sorted order are shown, the others only
counted (:mod:`.target_status`). Times come from the Redis clock. A key of another type
than it should hold, or a counter that is no integer, is read as empty and named in
``odd_keys`` (:mod:`.odd_keys`): one odd key never hides the other figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from ..config.model import WatcherSpec
from ..rules.model import WatcherRules
from ..rules.ruleset import RuleSet
from ..rules.schedules import Schedule, compile_schedules
from ..store.connect import is_cluster
from ..store.keys import LAYOUT_KEY, WatcherKeys
from ..store.keyspace import text
from .join_status import JoinStatus, join_status
from .odd_keys import OddKey, Reads, as_int, noted
from .schedule_status import ScheduleStatus, schedule_status
from .target_status import MAX_KEYS, SetStatus, TargetStatus, targets_and_sets

__all__ = ["MAX_KEYS", "SetStatus", "TargetStatus", "WatcherStatus", "as_json", "gather"]

#: The router's counters of a watcher, as named in its stats hash.
#: ``leaf``: done events the workers did not write (worker/leaves.py).
WATCHER_COUNTERS = ("events", "queued", "deduplicated", "unmatched", "retried", "dead", "leaf")
#: The per-rule counters (``<rule>|<counter>`` in the stats hash).
RULE_COUNTERS = ("matched", "queued", "deduplicated", "retried", "dead")


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """A router instance working on a watcher."""

    name: str
    alive: bool
    heartbeat_age_s: float | None  # None: it has not beaten since status learnt to ask
    in_flight: int


@dataclass(frozen=True, slots=True)
class RuleStatus:
    """The counters of one rule."""

    name: str
    matched: int = 0
    queued: int = 0
    deduplicated: int = 0
    retried: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True)
class WatcherStatus:
    """Everything about one watcher."""

    input: str
    depth: int
    in_flight: int
    instances: list[InstanceStatus]
    dead_letter: int
    unmatched_kept: int | None
    counters: dict[str, int]
    rules: list[RuleStatus]
    targets: list[TargetStatus]
    sets: list[SetStatus]
    #: Templates naming more than MAX_KEYS keys -> how many of their keys are not shown.
    more_keys: dict[str, int] = field(default_factory=dict)
    #: Where the figures come from (the CLI sets it, password masked).
    redis: str = ""
    #: The schedules this watcher's router fires.
    schedules: list[ScheduleStatus] = field(default_factory=list)
    #: Whether the watcher's Redis is a Redis Cluster (the only one with an outbox).
    cluster: bool = False
    #: Entries of the watcher's outbox, and the age of the oldest (None: empty).
    outbox: int = 0
    outbox_oldest_age_s: float | None = None
    #: Keys that do not hold what they should ("key: holds a zset, not a list"), read
    #: as empty: the watcher's own keys, its targets' and its sets'.
    odd_keys: list[str] = field(default_factory=list)
    #: Target and set templates that are only variables: any key, never scanned.
    dynamic: list[str] = field(default_factory=list)
    #: The keyspace's layout version (None: no router or worker recorded it yet).
    layout: int | None = None
    #: The watcher's join rules: open groups, the oldest, the next deadline.
    joins: list[JoinStatus] = field(default_factory=list)


def gather(
    ruleset: RuleSet, client: redis.Redis, *, namespace: str | None = None
) -> list[WatcherStatus]:
    """The status of every watcher of ``ruleset`` on ``client``'s Redis."""
    now_s = _redis_time_s(client)
    ns = namespace or ruleset.config.spec.namespace
    schedules = compile_schedules(ruleset.config)
    specs = ruleset.config.spec.watchers
    return [_watcher(w, client, now_s, ns, schedules, specs) for w in ruleset.watchers]


def as_json(statuses: Iterable[WatcherStatus]) -> list[dict[str, Any]]:
    """The statuses as plain JSON-ready data."""
    return [asdict(s) for s in statuses]


def _redis_time_s(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def _watcher(
    rules: WatcherRules,
    client: redis.Redis,
    now_s: float,
    ns: str,
    schedules: tuple[Schedule, ...],
    specs: Iterable[WatcherSpec],
) -> WatcherStatus:
    spec = rules.spec
    keys = WatcherKeys.of(spec, "")
    reads = Reads(client)
    stats = reads.counters(keys.stats)
    instances = _instances(reads, keys, spec.taken_queue, now_s)
    found = targets_and_sets(rules, specs, reads, now_s, ns)
    oldest_entry = reads.scored(keys.outbox_at, 0)
    in_flight = sum(i.in_flight for i in instances) + reads.llen(spec.taken_queue)
    joins = join_status(rules, reads, stats, now_s)
    return WatcherStatus(
        input=spec.input_queue,
        depth=reads.llen(spec.input_queue),
        in_flight=in_flight,
        instances=instances,
        dead_letter=reads.llen(spec.dead_queue),
        unmatched_kept=reads.llen(spec.unmatched_queue) if spec.unmatched_queue else None,
        counters={name: stats.get(name, 0) for name in WATCHER_COUNTERS},
        rules=[_rule(rule.name, stats) for rule in _unique_rules(rules)],
        targets=list(found.targets.values()),
        sets=list(found.sets.values()),
        more_keys=found.more,
        schedules=[
            schedule_status(s, client, now_s, ns) for s in schedules if s.owner == spec.input_queue
        ],
        cluster=is_cluster(client),
        outbox=reads.hlen(keys.outbox),
        outbox_oldest_age_s=(round(now_s - oldest_entry[0][1] / 1000, 3) if oldest_entry else None),
        odd_keys=list(dict.fromkeys(str(odd) for odd in reads.odd)),
        dynamic=found.dynamic,
        layout=_layout(reads),
        joins=joins,
    )


def _layout(reads: Reads) -> int | None:
    """The newest layout written to the keyspace (see :mod:`~..store.layout`)."""
    none: Any = None
    value: Any = reads.read(
        LAYOUT_KEY, "hash", lambda: reads.client.hget(LAYOUT_KEY, "version"), none
    )
    version = None if value is None else as_int(value)
    if value is not None and version is None:
        shown = text(value)[:40]
        reads.odd.append(noted(OddKey(LAYOUT_KEY, f"version {shown!r} is no layout number")))
    return version


def _unique_rules(rules: WatcherRules) -> list[Any]:
    seen: dict[str, Any] = {}
    for rule in rules.rules:
        seen.setdefault(rule.name, rule)
    return list(seen.values())


def _rule(name: str, stats: Mapping[str, int]) -> RuleStatus:
    counts = {c: stats.get(f"{name}|{c}", 0) for c in RULE_COUNTERS}
    return RuleStatus(name=name, **counts)


def _instances(
    reads: Reads, keys: WatcherKeys, taken_queue: str, now_s: float
) -> list[InstanceStatus]:
    beats = dict(reads.scored(keys.beats, -1))
    found = []
    for name, expiry_ms in reads.scored(keys.instances, -1):
        beat_ms = beats.get(name)
        found.append(
            InstanceStatus(
                name=name,
                alive=expiry_ms > now_s * 1000,
                heartbeat_age_s=None if beat_ms is None else round(now_s - beat_ms / 1000, 3),
                in_flight=reads.llen(f"{taken_queue}/{name}"),
            )
        )
    return found

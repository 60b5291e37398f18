"""What a rule set's Redis holds right now: the figures behind ``resc-dramatiq status``.

Reads only (no write, no script): per watcher its input depth, the events in flight per
router instance with the age of its heartbeat, dead-letter and unmatched counts, the
router's counters and, on a Redis Cluster, its outbox (the committed batches whose tasks
in other hash slots are not all queued yet: they wait for a router, or for a shard that
cannot be reached); per rule its counters; per target the depth of its list, or of its
Dramatiq queue with the delayed and dead-lettered messages; per dedup set its size and
the age of its oldest entry; per schedule it feeds, its last firing, lag and next firing
(:mod:`.schedule_status`). Targets and sets named by templates are found with
``SCAN``: the first :data:`MAX_KEYS` names in sorted order are shown, the others only
counted. Times come from the Redis clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from ..rules.model import WatcherRules
from ..rules.ruleset import RuleSet
from ..rules.schedules import Schedule, compile_schedules
from ..rules.templates import Template
from ..store.connect import is_cluster
from ..store.keys import DramatiqKeys, WatcherKeys
from ..store.keyspace import counters, names_of, text
from .schedule_status import ScheduleStatus, schedule_status

#: Most concrete keys listed for one templated target or set.
MAX_KEYS = 50

#: The router's counters of a watcher, as named in its stats hash.
WATCHER_COUNTERS = ("events", "queued", "deduplicated", "unmatched", "retried", "dead")
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
class TargetStatus:
    """One concrete target: a raw list, or a Dramatiq queue."""

    key: str
    kind: str  # "list" or "dramatiq"
    depth: int
    delayed: int | None = None  # Dramatiq: messages in the delay queue
    dead_lettered: int | None = None  # Dramatiq: messages in the dead-letter queue


@dataclass(frozen=True, slots=True)
class SetStatus:
    """One concrete dedup set."""

    key: str
    size: int
    oldest_age_s: float | None


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


def gather(
    ruleset: RuleSet, client: redis.Redis, *, namespace: str | None = None
) -> list[WatcherStatus]:
    """The status of every watcher of ``ruleset`` on ``client``'s Redis."""
    now_s = _redis_time_s(client)
    ns = namespace or ruleset.config.spec.namespace
    schedules = compile_schedules(ruleset.config)
    return [_watcher(w, client, now_s, ns, schedules) for w in ruleset.watchers]


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
    schedules: tuple[Schedule, ...] = (),
) -> WatcherStatus:
    spec = rules.spec
    keys = WatcherKeys.of(spec, "")
    stats = counters(client, keys.stats)
    instances = _instances(client, keys, spec.taken_queue, now_s)
    targets, sets, more = _targets_and_sets(rules, client, now_s, ns)
    oldest_entry = _scored(client, keys.outbox_at, 0)
    return WatcherStatus(
        input=spec.input_queue,
        depth=client.llen(spec.input_queue),
        in_flight=sum(i.in_flight for i in instances) + client.llen(spec.taken_queue),
        instances=instances,
        dead_letter=client.llen(spec.dead_queue),
        unmatched_kept=client.llen(spec.unmatched_queue) if spec.unmatched_queue else None,
        counters={name: stats.get(name, 0) for name in WATCHER_COUNTERS},
        rules=[_rule(rule.name, stats) for rule in _unique_rules(rules)],
        targets=targets,
        sets=sets,
        more_keys=more,
        schedules=[
            schedule_status(s, client, now_s, ns) for s in schedules if s.owner == spec.input_queue
        ],
        cluster=is_cluster(client),
        outbox=client.hlen(keys.outbox),
        outbox_oldest_age_s=(round(now_s - oldest_entry[0][1] / 1000, 3) if oldest_entry else None),
    )


def _unique_rules(rules: WatcherRules) -> list[Any]:
    seen: dict[str, Any] = {}
    for rule in rules.rules:
        seen.setdefault(rule.name, rule)
    return list(seen.values())


def _rule(name: str, stats: Mapping[str, int]) -> RuleStatus:
    counts = {c: stats.get(f"{name}|{c}", 0) for c in RULE_COUNTERS}
    return RuleStatus(name=name, **counts)


def _instances(
    client: redis.Redis, keys: WatcherKeys, taken_queue: str, now_s: float
) -> list[InstanceStatus]:
    beats = dict(_scored(client, keys.beats, -1))
    found = []
    for name, expiry_ms in _scored(client, keys.instances, -1):
        beat_ms = beats.get(name)
        found.append(
            InstanceStatus(
                name=name,
                alive=expiry_ms > now_s * 1000,
                heartbeat_age_s=None if beat_ms is None else round(now_s - beat_ms / 1000, 3),
                in_flight=client.llen(f"{taken_queue}/{name}"),
            )
        )
    return found


def _targets_and_sets(
    rules: WatcherRules, client: redis.Redis, now_s: float, ns: str
) -> tuple[list[TargetStatus], list[SetStatus], dict[str, int]]:
    targets: dict[str, TargetStatus] = {}
    sets: dict[str, SetStatus] = {}
    more: dict[str, int] = {}
    for rule in rules.rules:
        for make in rule.makes:
            dramatiq = make.target.actor is not None
            prefix = DramatiqKeys(ns).queue("") if dramatiq else ""
            names = _shown_keys(client, make.target.queue, prefix, more)
            for name in names:
                if name not in targets:
                    targets[name] = _target(client, name, ns, dramatiq=dramatiq)
            if make.set is None:
                continue
            for name in _shown_keys(client, make.set, "", more):
                sets.setdefault(name, _set(client, name, now_s))
    return list(targets.values()), list(sets.values()), more


def _shown_keys(
    client: redis.Redis, template: Template, prefix: str, more: dict[str, int]
) -> list[str]:
    """The first :data:`MAX_KEYS` names ``template`` stands for, sorted; the number of
    the others goes into ``more`` under the template's source."""
    shown: list[str] = []  # sorted, never more than MAX_KEYS: memory stays bounded
    total = 0
    for name in names_of(client, template, prefix):
        total += 1
        if len(shown) < MAX_KEYS:
            bisect.insort(shown, name)
        elif name < shown[-1]:
            shown.pop()
            bisect.insort(shown, name)
    if total > len(shown):
        more[template.source] = total - len(shown)
    return shown


def _target(client: redis.Redis, queue: str, ns: str, *, dramatiq: bool) -> TargetStatus:
    if not dramatiq:
        return TargetStatus(key=queue, kind="list", depth=client.llen(queue))
    keys = DramatiqKeys(ns)
    return TargetStatus(
        key=queue,
        kind="dramatiq",
        depth=client.llen(keys.queue(queue)),
        delayed=client.llen(keys.delayed(queue)),
        dead_lettered=client.zcard(keys.dead(queue)),
    )


def _set(client: redis.Redis, key: str, now_s: float) -> SetStatus:
    oldest = _scored(client, key, 0)
    return SetStatus(
        key=key,
        size=client.zcard(key),
        oldest_age_s=round(now_s - oldest[0][1], 3) if oldest else None,
    )


def _scored(client: redis.Redis, key: str, end: int) -> list[tuple[str, float]]:
    """Members and scores of a sorted set, from the lowest score to rank ``end``."""
    found: Any = client.zrange(key, 0, end, withscores=True)
    return [(text(member), float(score)) for member, score in found]

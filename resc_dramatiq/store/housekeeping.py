"""Dedup housekeeping: entries older than their make's ``ttl_s`` leave the dedup set.

resc never cleans its sets, so a worker that dies without releasing its task leaves an
entry that blocks that task forever. A make with ``ttl_s`` lets :class:`Pruner` remove
entries queued more than ``ttl_s`` seconds ago (by the Redis clock), at most
``batch`` entries per set and one ``SCAN`` page per templated set name per
:meth:`Pruner.step`, so the router's periodic pruning never holds Redis for long.

A set written by several makes is pruned with the largest of their ``ttl_s``, and not
at all when one of them has none: an entry is removed only once every rule that may
have added it agrees it is old.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from ..rules.ruleset import RuleSet
from ..rules.templates import Template
from .keyspace import glob_of, scan_page, text
from .scripts import Scripts

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune step did (or, dry, would do) to one set."""

    set: str
    ttl_s: int
    removed: int
    old_left: int  # old entries still there (the step's bound was reached)
    size: int
    oldest_age_s: int | None


def set_ttls(ruleset: RuleSet) -> dict[Template, int]:
    """The dedup set templates to prune and the time to live of each (see module doc)."""
    ttls: dict[str, int | None] = {}
    templates: dict[str, Template] = {}
    for watcher in ruleset.watchers:
        for rule in watcher.rules:
            for make in rule.makes:
                if make.set is None:
                    continue
                source = make.set.source
                templates[source] = make.set
                if source in ttls and (ttls[source] is None or make.ttl_s is None):
                    ttls[source] = None
                else:
                    ttls[source] = max(ttls.get(source) or 0, make.ttl_s or 0) or None
    return {templates[s]: ttl for s, ttl in ttls.items() if ttl is not None}


class Pruner:
    """Prunes the dedup sets of a rule set on one Redis, a bounded step at a time."""

    def __init__(self, *, ruleset: RuleSet, client: redis.Redis, batch: int = 1000) -> None:
        self.client = client
        self.batch = batch
        self.ttls = set_ttls(ruleset)
        self._cursors: dict[str, dict[str, int]] = {}  # SCAN position per templated set name
        self._script = Scripts(client)["prune"]

    def step(self, *, dry_run: bool = False) -> list[Pruned]:
        """One bounded pass: every constant set, one SCAN page of each templated one."""
        done: list[Pruned] = []
        for template, ttl_s in self.ttls.items():
            for key in self._keys(template):
                done.append(self.prune(key, ttl_s, dry_run=dry_run))
        return done

    def prune(self, key: str, ttl_s: int, *, dry_run: bool = False) -> Pruned:
        """Remove (at most ``batch``) entries of ``key`` older than ``ttl_s``."""
        args = [ttl_s, self.batch, "1" if dry_run else "0"]
        removed, old_left, size, oldest, now = self._script(keys=[key], args=args)
        return Pruned(
            set=key,
            ttl_s=ttl_s,
            removed=int(removed),
            old_left=int(old_left),
            size=int(size),
            oldest_age_s=int(now) - int(float(oldest)) if oldest else None,
        )

    def sweep(self, *, dry_run: bool = False, max_steps: int = 100_000) -> list[Pruned]:
        """Prune until nothing old is left and every SCAN went round (``prune`` command)."""
        totals: dict[str, Pruned] = {}
        for _ in range(max_steps):
            for p in self.step(dry_run=dry_run):
                before = totals.get(p.set)
                removed = p.removed if dry_run or before is None else before.removed + p.removed
                totals[p.set] = Pruned(p.set, p.ttl_s, removed, p.old_left, p.size, p.oldest_age_s)
            pending = any(p.old_left for p in totals.values()) and not dry_run
            if not pending and not any(any(c.values()) for c in self._cursors.values()):
                break
        return sorted(totals.values(), key=lambda p: p.set)

    def _keys(self, template: Template) -> list[str]:
        if template.is_constant:
            return [template.source]
        pattern = glob_of(template)
        try:
            cursors, found = scan_page(self.client, self._cursors.get(pattern, {}), pattern)
        except (redis.ConnectionError, redis.TimeoutError):
            # on a cluster the node a cursor is for may be gone for good (failed over):
            # the round starts again, on the primaries of then
            self._cursors.pop(pattern, None)
            raise
        self._cursors[pattern] = cursors
        return [text(k) for k in found if self._is_zset(k)]

    def _is_zset(self, key: Any) -> bool:
        return bool(self.client.type(key) in (b"zset", "zset"))

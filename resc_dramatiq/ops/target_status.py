"""The targets and dedup sets a watcher's rules feed, as ``status`` reads them.

Each templated name is found with ``SCAN MATCH`` (:func:`~..store.keyspace.names_of`):
the first :data:`MAX_KEYS` names in sorted order are read, the others only counted. A
template that is only variables (``${q}``) could name any key: it is listed as dynamic
and never scanned. A name a template renders that the routers keep for themselves
(:func:`~..store.keys.own_key`: a stats hash, a taken list...) is no target and is left
out; a key of another type than the target's is shown with its problem
(:mod:`.odd_keys`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config.model import WatcherSpec
from ..rules.model import WatcherRules
from ..rules.templates import Template
from ..store.keys import DramatiqKeys, dramatiq_own, own_key
from ..store.keyspace import names_of
from .odd_keys import Reads

#: Most concrete keys listed for one templated target or set.
MAX_KEYS = 50


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """One concrete target: a raw list, or a Dramatiq queue."""

    key: str
    kind: str  # "list" or "dramatiq"
    depth: int
    delayed: int | None = None  # Dramatiq: messages in the delay queue
    dead_lettered: int | None = None  # Dramatiq: messages in the dead-letter queue
    problem: str | None = None  # a key of another type: what it holds (figures read as 0)


@dataclass(frozen=True, slots=True)
class SetStatus:
    """One concrete dedup set."""

    key: str
    size: int
    oldest_age_s: float | None
    problem: str | None = None  # a key of another type: what it holds


@dataclass
class Found:
    """What a watcher's targets and sets hold."""

    targets: dict[str, TargetStatus] = field(default_factory=dict)
    sets: dict[str, SetStatus] = field(default_factory=dict)
    #: Templates naming more than MAX_KEYS keys -> how many of their keys are not shown.
    more: dict[str, int] = field(default_factory=dict)
    #: Templates that are only variables: any name, never scanned.
    dynamic: list[str] = field(default_factory=list)


def is_dynamic(template: Template) -> bool:
    """Whether ``template`` is only variables (``${q}``): it may name any key."""
    return not template.is_constant and not any(template.literals)


def targets_and_sets(
    rules: WatcherRules, specs: Iterable[WatcherSpec], reads: Reads, now_s: float, ns: str
) -> Found:
    """The targets and sets of ``rules``, each read with ``reads``."""
    found = Found()
    specs = tuple(specs)
    for rule in rules.rules:
        for make in rule.makes:
            dramatiq = make.target.actor is not None
            prefix = DramatiqKeys(ns).queue("") if dramatiq else ""
            for name in _shown_keys(reads, make.target.queue, prefix, specs, found):
                if name not in found.targets:
                    found.targets[name] = _target(reads, name, ns, dramatiq=dramatiq)
            if make.set is not None:
                for name in _shown_keys(reads, make.set, "", specs, found):
                    if name not in found.sets:
                        found.sets[name] = _set(reads, name, now_s)
    return found


def _shown_keys(
    reads: Reads, template: Template, prefix: str, specs: tuple[WatcherSpec, ...], found: Found
) -> list[str]:
    """The first :data:`MAX_KEYS` names ``template`` stands for, sorted; the number of
    the others goes into ``found.more`` under the template's source."""
    if is_dynamic(template):
        if template.source not in found.dynamic:
            found.dynamic.append(template.source)
        return []
    shown: list[str] = []  # sorted, never more than MAX_KEYS: memory stays bounded
    total = 0
    for name in names_of(reads.client, template, prefix):
        if dramatiq_own(name) if prefix else own_key(name, specs):
            continue
        total += 1
        if len(shown) < MAX_KEYS:
            bisect.insort(shown, name)
        elif name < shown[-1]:
            shown.pop()
            bisect.insort(shown, name)
    if total > len(shown):
        found.more[template.source] = total - len(shown)
    return shown


def _problem(reads: Reads, before: int) -> str | None:
    """The odd keys met since ``before`` (the length of ``reads.odd`` then), as text."""
    return "; ".join(dict.fromkeys(str(odd) for odd in reads.odd[before:])) or None


def _target(reads: Reads, queue: str, ns: str, *, dramatiq: bool) -> TargetStatus:
    before = len(reads.odd)
    if not dramatiq:
        depth = reads.llen(queue)
        return TargetStatus(key=queue, kind="list", depth=depth, problem=_problem(reads, before))
    keys = DramatiqKeys(ns)
    depth, delayed = reads.llen(keys.queue(queue)), reads.llen(keys.delayed(queue))
    return TargetStatus(
        key=queue,
        kind="dramatiq",
        depth=depth,
        delayed=delayed,
        dead_lettered=reads.zcard(keys.dead(queue)),
        problem=_problem(reads, before),
    )


def _set(reads: Reads, key: str, now_s: float) -> SetStatus:
    before = len(reads.odd)
    oldest = reads.scored(key, 0)
    odd = len(reads.odd) > before
    return SetStatus(
        key=key,
        size=0 if odd else reads.zcard(key),
        oldest_age_s=round(now_s - oldest[0][1], 3) if oldest else None,
        problem=_problem(reads, before),
    )

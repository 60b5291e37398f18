"""Join groups in Redis: their keys, a batch's join hits as ``commit.lua`` reads them,
and the deadlines any router fires (``expire.lua``).

The commit that releases an event records it in its group, checks whether the group is
complete and, if so, queues the join's make and leaves a tombstone: one atomic step
(``lua/library.lua``'s joins, called by ``commit.lua``), for the router and for a
worker's inline commit alike. A group past its deadline is fired by
:meth:`Deadlines.fire`, which any router's upkeep calls: ``expire.lua`` checks, in the
same step as it queues the ``expired`` make and writes the tombstone, that the group is
still open and its deadline (Redis's clock) has come, so a group fires once across
routers and never early. See docs/joins.md.

Over ~250 lines on purpose: a group's keys, the hits that open and complete it, the
header of the scripts that close it (a deadline round's, an operator's) and ``check``'s
warnings about groups no rule reads all follow the one key layout written here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

import msgpack

from ..config.joins import DEFAULT_TTL_S
from ..config.model import WatcherSpec
from ..errors import RescError
from ..rules.batch import JoinHit, PlannedTask
from ..rules.joins import MEMBERS_TOKEN
from ..rules.model import Rule
from ..rules.plan import Planner
from ..rules.ruleset import RuleSet
from .contract import Status
from .keys import DramatiqKeys, WatcherKeys, hash_tag
from .keyspace import text
from .lineage import LineageBucket, tasks_header
from .scripts import Scripts, refusal, script, wrong_type
from .tasks import KeyList, Records, task_rows
from .wire import Call, send

logger = logging.getLogger(__name__)

#: A closed group's tombstone when no member gave its join's ``ttl_s`` (ms).
DEFAULT_TTL_MS = DEFAULT_TTL_S * 1000

#: What commit.lua gets as a join hit's task's event: its index in the batch.
_EVENT_INDEX = attrgetter("event_index")

#: Most due groups one :meth:`Deadlines.fire` reads and fires.
FIRE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class JoinKeys:
    """The keys of the join groups one watcher writes, in its slot on a Redis Cluster
    (``resc/joins/{tag}/...`` with its input list's hash tag, else ``resc/joins/...``):

    * ``group/<name>``: a group's hash while open (members, expectation, first member's
      time and event), then its tombstone (``state``: done, failed or expired) for
      the join's ``ttl_s``;
    * ``open``: sorted set, group key -> when its first member came (ms, Redis clock);
    * ``due``: sorted set, group key -> its deadline (ms), for groups with one;
    * ``open/count``: hash, join rule -> its open groups.
    """

    prefix: str

    @classmethod
    def of(cls, input_queue: str) -> JoinKeys:
        """The join keys of the slot of the watcher of ``input_queue``."""
        tag = hash_tag(input_queue)
        return cls(f"resc/joins/{tag}/" if tag else "resc/joins/")

    def group(self, name: str) -> str:
        """The hash of group ``name``."""
        return f"{self.prefix}group/{name}"

    @property
    def open(self) -> str:
        return f"{self.prefix}open"

    @property
    def due(self) -> str:
        return f"{self.prefix}due"

    @property
    def counts(self) -> str:
        return f"{self.prefix}open/count"


def encode_hits(
    hits: Sequence[JoinHit], keys: KeyList, jk: JoinKeys, dramatiq: DramatiqKeys, records: Records
) -> list[list[Any]]:
    """``hits`` as ``h.joins`` (:data:`~.contract.JOIN_HIT_FIELDS` each): group and task keys
    added to ``keys``, lineage records to ``records`` (see :func:`~.tasks.task_rows`)."""
    # the hits' tasks made rows in one call (most hits have one task), then cut per hit
    made = task_rows(
        [t for h in hits for t in h.tasks], keys, dramatiq, _EVENT_INDEX, records=records
    )
    rows, at = [], 0
    group_key, add_key = jk.group, keys.add
    for h in hits:
        n = len(h.tasks)
        row = [
            h.kind, add_key(group_key(h.group)), h.rule, h.member, h.expect, h.event_index,
            made[at : at + n], h.ttl_ms or DEFAULT_TTL_MS,
        ]  # fmt: skip
        at += n
        tail = (h.deadline_ms, h.members, h.data, h.token, h.parent, h.ids, h.trace)
        if any(tail):  # else all left out; the empty ones at its end are
            row += tail
            while not row[-1]:
                row.pop()
        rows.append(row)
    return rows


@dataclass(frozen=True, slots=True)
class Fired:
    """A due group that :meth:`Deadlines.fire` looked at: ``fired`` when it fired now."""

    group: str
    rule: str
    fired: bool
    queued: int = 0


class Deadlines:
    """Fires the due groups of one watcher's join rules (those with ``deadline_s``)."""

    def __init__(
        self,
        *,
        scripts: Scripts,
        spec: WatcherSpec,
        planner: Planner,
        dramatiq: DramatiqKeys,
        channel: str | None = None,
    ) -> None:
        self.scripts, self.planner, self.dramatiq = scripts, planner, dramatiq
        self.keys = JoinKeys.of(spec.input_queue)
        self.watcher = WatcherKeys.of(spec, "")
        self.channel = channel
        self.rules = {r.name for r in planner.rules.rules if _timed(r)}

    @staticmethod
    def needed(planner: Planner) -> bool:
        """Whether a join rule of ``planner``'s watcher has a deadline, or waits for a
        fan-out (a group completed before its record is fired by the rounds)."""
        return any(_timed(r) for r in planner.rules.rules)

    def fire(self, *, limit: int = FIRE_LIMIT) -> list[Fired]:
        """Fire this watcher's groups whose deadline has come (at most ``limit``): their
        ``expired`` make queued once, their tombstone written. Groups of other watchers'
        join rules (sharing the slot's index) are left to them."""
        if not self.rules:
            return []
        client = self.scripts.client
        now_ms = int(time.time() * 1000)
        found = cast(list[bytes], client.zrangebyscore(self.keys.due, "-inf", now_ms, 0, limit))
        due = [text(g) for g in found]
        pipe = client.pipeline(transaction=False)
        for group_key in due:
            pipe.hmget(group_key, "rule", "event", "ready")
        fired: list[Fired] = []
        calls: list[tuple[str, str, Call]] = []
        for group_key, (rule, event, ready) in zip(due, pipe.execute(), strict=True):
            if rule is None or event is None or text(rule) not in self.rules:
                continue
            name = group_key.removeprefix(self.keys.group(""))
            make = self.planner.completed if ready is not None else self.planner.expired
            try:
                tasks = make(text(rule), event, name, now_ms)
            except RescError as e:
                logger.error("join group %r: its make cannot be made: %s", name, e)
                tasks = []
            call = self._call(group_key, text(rule), tasks, now_ms, ready=ready is not None)
            calls.append((name, text(rule), call))
        if not calls:
            return fired
        replies = send(client, [c for _, _, c in calls]).replies()
        for (name, rule, call), reply in zip(calls, replies, strict=True):
            refused = refusal(reply, call.keys)
            if refused is not None:
                logger.error("join group %r: %s", name, wrong_type(refused, "nothing was written"))
                continue
            done = reply[0] == Status.DONE
            fired.append(Fired(name, rule, done, int(reply[1]) if done else 0))
            if done:
                logger.info(
                    "join group %r of rule %r fired: %d task(s) queued", name, rule, reply[1]
                )
        return fired

    def _call(
        self, group_key: str, rule: str, tasks: Sequence[PlannedTask], now_ms: int, *, ready: bool
    ) -> Call:
        fields = {"rule": rule, "ready": ready}
        keys, header = closing_header(
            self.keys, self.planner.rules.spec, group_key, tasks, self.dramatiq,
            channel=self.channel, now_ms=now_ms, fields=fields,
        )  # fmt: skip
        return Call(script("expire"), keys.names, [header])


def closing_header(
    jk: JoinKeys,
    spec: WatcherSpec,
    group_key: str,
    tasks: Sequence[PlannedTask],
    dramatiq: DramatiqKeys,
    *,
    channel: str | None,
    now_ms: int,
    fields: dict[str, Any],
) -> tuple[KeyList, bytes]:
    """The keys and the packed header of a script that closes group ``group_key`` of
    ``spec``'s watcher (``expire.lua``, ``join_close.lua``): the group, the slot's join
    index, the watcher's stats; ``fields`` (the script's own), the dedup score, the
    notification channel and prefix, the default tombstone ttl, the members' token and
    ``tasks`` (their event: the group key) with their lineage records."""
    watcher = WatcherKeys.of(spec, "")
    keys = KeyList([group_key, jk.open, jk.due, jk.counts, watcher.stats])
    header = {
        **fields,
        "score": int(time.time()),
        "channel": channel,
        "prefix": watcher.taken_base,
        "ttl": DEFAULT_TTL_MS,
        "token": MEMBERS_TOKEN,
        **tasks_header(tasks, keys, dramatiq, lambda t: group_key, LineageBucket.of(spec, now_ms)),
    }
    return keys, msgpack.packb(header, use_bin_type=False)


def _timed(rule: Rule) -> bool:
    """A join rule with a deadline, or waiting for a fan-out's record."""
    join = rule.join
    return join is not None and not join.fail and (join.deadline_ms > 0 or join.expect is None)


def join_warnings(ruleset: RuleSet) -> list[str]:
    """Groups that no rule would complete: a fan-out (a make with ``group:``) or a rule
    failing groups whose watcher's join keys (its hash tag: :class:`JoinKeys`) no join
    rule of the right kind shares. Said by ``check``; nothing refuses them."""
    prefixes: dict[str, set[str]] = {"fan-out": set(), "any": set()}
    for watcher in ruleset.watchers:
        prefix = JoinKeys.of(watcher.spec.input_queue).prefix
        for rule in watcher.rules:
            if rule.join is not None and not rule.join.fail:
                prefixes["any"].add(prefix)
                if rule.join.expect is None:
                    prefixes["fan-out"].add(prefix)
    warnings = []
    for watcher in ruleset.watchers:
        prefix = JoinKeys.of(watcher.spec.input_queue).prefix
        for rule in watcher.rules:
            fan_outs = [m.group.source for m in rule.makes if m.group is not None]
            if fan_outs and prefix not in prefixes["fan-out"]:
                warnings.append(
                    f"rule {rule.name!r} records the group {fan_outs[0]!r} "
                    "(make with group:), but no join rule with expect: 'fan-out' reads the "
                    f"groups of watcher {watcher.spec.input_queue!r}'s keys ({prefix}...)"
                )
            if rule.join is not None and rule.join.fail and prefix not in prefixes["any"]:
                warnings.append(
                    f"rule {rule.name!r} fails groups no join rule reads: no join rule's "
                    f"watcher shares watcher {watcher.spec.input_queue!r}'s keys ({prefix}...)"
                )
    return warnings

"""Batches spanning hash slots of a Redis Cluster: a transactional outbox.

A Lua script may touch keys of one slot only (or, flagged, of the slots of one node).
On a cluster, a watcher's commit (``commit.lua``, in the watcher's slot) writes the
tasks that fall in that slot, releases the batch's events and records the other tasks
in the watcher's outbox as one entry of *parts*, one part per slot: all or nothing, as
on a single server. Then:

1. the parts are applied by ``apply.lua``, one call per node for all the parts it
   serves (one per part where a server does not take the cross-slot flag); each part's
   marker is in its slot, written with its tasks: a part applied again writes nothing
   and answers as the first time did;
2. once every part answered, ``settle.lua`` (in the watcher's slot) removes the entry
   and adds the parts' counters; only the call that removes it counts.

The store that committed the batch applies and settles it at once. Should its process
die (or a slot be unreachable) in between, the entry stays in the outbox, and any router
of the watcher finishes it once it is older than a grace period (:meth:`Outbox.sweep`):
the steps are idempotent, so two routers finishing one entry do it once. Every task is
queued exactly once, also without a dedup set.

Why a part is written once: its marker (the batch id's field in its slot's applied
hash, ``resc/applied/{t}``) is read before anything is written and written in the same
script as its tasks, on the node that serves both: Redis runs a script whole, and a
replica receives its writes as one transaction, so a failover keeps the part with its
marker or neither, and a migrating slot moves them together. A part listed twice in
one call is answered as its first listing. The applied times (``resc/applied/at/{t}``)
only say when a marker may be forgotten (after ``marker_ttl_ms``); ``apply.lua`` writes
a part's time before its tasks (a refusal may leave a time without a marker: harmless)
and asks the types of a part's keys only when one of them exists.

Over ~250 lines on purpose: an entry's encoding, the steps that finish it and why they
write once are one protocol.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import msgpack
import redis
from redis.cluster import RedisCluster

from ..compat import primaries_of_slots
from ..rules.batch import PlannedTask
from .contract import Status
from .keys import HISTORY_TTL_S, DramatiqKeys, WatcherKeys, applied_keys
from .keyspace import text
from .resilience import ReplicaWait
from .scripts import Scripts, refusal, script, wrong_type
from .tasks import KeyList, task_rows
from .wire import Call, send

#: What runs while an entry's parts are applied (None: nothing).
Meanwhile = Callable[[], None] | None

#: Most outbox entries one sweep reads and finishes.
SWEEP_LIMIT = 100

#: The keys of a part's slot that record its parts applied (see :func:`.keys.applied_keys`),
#: in front of the part's own keys in ``apply.lua``.
APPLIED_KEYS = 2


class Part(NamedTuple):
    """The tasks of a batch that fall in one hash slot, as ``apply.lua`` takes them (a
    tuple: a batch may have hundreds of parts, built and read once each)."""

    slot: int
    keys: list[str]  # the part's keys, each once (after its two applied keys)
    tasks: bytes  # MessagePack rows (contract.TASK_FIELDS), key indexes from the applied key
    rules: list[str]  # the rule of each task, in order

    def script_keys(self) -> list[str]:
        """The part's KEYS: its slot's applied markers, then its keys."""
        return [*applied_keys(self.slot), *self.keys]


@dataclass(frozen=True, slots=True)
class Entry:
    """One committed batch's parts in other slots, as kept in the outbox."""

    batch_id: str
    score: int  # the dedup score: when the batch was taken, unix seconds
    channel: str  # listener channel ('' none) and the prefix of its lines
    prefix: str
    parts: list[Part]

    def pack(self) -> bytes:
        """The entry as stored in the outbox hash."""
        parts = [[p.slot, p.keys, p.tasks, p.rules] for p in self.parts]
        packed: bytes = msgpack.packb([self.score, self.channel, self.prefix, parts])
        return packed

    @classmethod
    def unpack(cls, batch_id: str, blob: bytes) -> Entry:
        """An entry read back from the outbox hash."""
        score, channel, prefix, parts = msgpack.unpackb(blob, raw=False)
        return cls(batch_id, score, channel, prefix, [Part(s, k, t, r) for s, k, t, r in parts])

    def call(self, parts: Sequence[Part], ttl_ms: int, *, flags: bool) -> Call:
        """One ``apply.lua`` call of ``parts`` (of one node; ``flags``: the script's
        cross-slot flag, for parts of several slots)."""
        keys: list[str] = []
        bases = []
        for part in parts:
            bases.append(len(keys))
            keys += applied_keys(part.slot)
            keys += part.keys
        header = {
            "id": self.batch_id,
            "score": self.score,
            "marker_ttl_ms": ttl_ms,
            "channel": self.channel or None,
            "prefix": self.prefix,
            "keys": keys,
            "parts": bases,
        }
        packer = msgpack.Packer(use_bin_type=False)
        # the parts' tasks, as stored, put together as one MessagePack array (one
        # unpack in the script rather than one per part)
        tasks = b"".join([packer.pack_array_header(len(parts)), *(p.tasks for p in parts)])
        return Call(script("apply", flags=flags), keys[:1], [packer.pack(header), tasks])


def parts_of(
    away: dict[int, list[PlannedTask]],
    events: Sequence[bytes],
    dramatiq: DramatiqKeys,
    *,
    with_events: bool,
) -> list[Part]:
    """One part per slot (``with_events``: each task carries its event's text, for the
    TRIGGER lines of a listener channel)."""
    pack = msgpack.Packer(use_bin_type=False).pack
    event = (lambda t: events[t.event_index]) if with_events else _no_event
    parts = []
    for slot, tasks in sorted(away.items()):
        keys = KeyList(after=APPLIED_KEYS)  # apply.lua's part keys start with its applied keys
        rows = task_rows(tasks, keys, dramatiq, event)
        parts.append(Part(slot, keys.names, pack(rows), [t.rule for t in tasks]))
    return parts


def _no_event(task: PlannedTask) -> bytes:
    return b""


class Outbox:
    """Finishes the outbox entries of one watcher: apply every part, then settle."""

    def __init__(
        self,
        *,
        home: Scripts,
        cluster: Scripts,
        keys: WatcherKeys,
        marker_ttl_ms: int,
        history_ttl_s: int = HISTORY_TTL_S,
        wait: ReplicaWait | None = None,
    ) -> None:
        self.home, self.cluster, self.keys = home, cluster, keys
        self.marker_ttl_ms, self.history_ttl_s = marker_ttl_ms, history_ttl_s
        #: With ``wait``, each step waits for that many replicas of its shard before the
        #: next (``WAIT`` on the connection that wrote it), so a failover of a shard
        #: cannot lose a part applied and settled meanwhile.
        self.wait = wait
        #: False once a server refused the cross-slot flag: one call per part then.
        self.cross_slot = True

    def finish(self, entry: Entry, meanwhile: Meanwhile = None) -> dict[str, int] | None:
        """Apply every part of ``entry`` and settle it; return its counters (None when
        another router settled it first). ``meanwhile`` runs once the parts are sent,
        before their replies are read (the router encodes its next batch there)."""
        counters = count(self.apply(entry, meanwhile))
        if not self.settle(entry.batch_id, counters):
            return None
        return {name: c for name, c in counters.items() if c}

    def apply(self, entry: Entry, meanwhile: Meanwhile = None) -> list[tuple[Part, Any]]:
        """Apply every part in its slot (once); each part with its reply.

        One call per node for the parts it serves (as last learned), every node's sent
        before any reply is read: one round trip for the whole entry, ``meanwhile`` run
        during it.
        """
        if not self.cross_slot:
            return self._apply([[p] for p in entry.parts], entry, meanwhile, flags=False)
        cluster = cast(RedisCluster, self.cluster.client)
        by_node: dict[str, list[Part]] = {}
        nodes = primaries_of_slots(cluster, [part.slot for part in entry.parts])
        for part, node in zip(entry.parts, nodes, strict=True):
            by_node.setdefault(node.name, []).append(part)
        try:
            return self._apply(list(by_node.values()), entry, meanwhile, flags=True)
        except redis.ResponseError as e:
            if "flags" not in str(e) and "compiling" not in str(e):
                raise
            self.cross_slot = False  # a server older than script flags: part by part
            return self._apply([[p] for p in entry.parts], entry, None, flags=False)

    def _apply(
        self, groups: list[list[Part]], entry: Entry, meanwhile: Meanwhile, *, flags: bool
    ) -> list[tuple[Part, Any]]:
        calls = [entry.call(parts, self.marker_ttl_ms, flags=flags) for parts in groups]
        sent = send(self.cluster.client, calls, self.wait)
        if meanwhile is not None:
            try:
                meanwhile()
            except BaseException:
                sent.discard()  # the parts may or may not be applied: the outbox knows
                raise
        replies: list[tuple[Part, Any]] = []
        for parts, reply in zip(groups, sent.replies(), strict=True):
            if reply and reply[0] == Status.WRONG_TYPE:  # a refusal: its key, by name
                refused = refusal(reply, [k for part in parts for k in part.script_keys()])
                assert refused is not None
                raise wrong_type(refused, "this part of the batch waits in the outbox")
            replies += zip(parts, reply, strict=True)
        return replies

    def settle(self, batch_id: str, counters: Counter[str]) -> bool:
        """Remove the entry and add its counters; False when it was settled before."""
        k = self.keys
        keys = [k.outbox, k.outbox_at, k.stats, k.history_at(int(time.time()) // 60)]
        args: list[Any] = [batch_id, self.history_ttl_s]
        for name, count in counters.items():
            if count:
                args += (name, count)
        return bool(self.home["settle"](keys=keys, args=args, wait=self.wait))

    def sweep(self, grace_ms: int, limit: int = SWEEP_LIMIT) -> int:
        """Finish the entries committed more than ``grace_ms`` ago (their router died, or
        a slot was out of reach); return how many were settled now."""
        client = self.home.client
        now_s, micros = client.time()
        cutoff = now_s * 1000 + micros // 1000 - grace_ms
        due = cast(
            list[bytes],
            client.zrangebyscore(self.keys.outbox_at, "-inf", cutoff, start=0, num=limit),
        )
        settled = 0
        for raw_id in due:
            batch_id = text(raw_id)
            entry = self.read(batch_id)
            if entry is None:  # settled meanwhile: only its time was left
                client.zrem(self.keys.outbox_at, batch_id)
                continue
            if self.finish(entry) is not None:
                settled += 1
        return settled

    def read(self, batch_id: str) -> Entry | None:
        """The entry of ``batch_id`` in the outbox (None: there is none)."""
        blob = cast(bytes | None, self.home.client.hget(self.keys.outbox, batch_id))
        return None if blob is None else Entry.unpack(batch_id, blob)

    def pending(self) -> int:
        """Entries in the outbox."""
        return int(self.home.client.hlen(self.keys.outbox))


def count(applied: Sequence[tuple[Part, Any]]) -> Counter[str]:
    """The counters of parts applied, read from their apply's replies (the first apply's,
    if it was repeated): totals, and ``'<rule>|queued'``, ``'<rule>|deduplicated'``."""
    queued = deduplicated = 0
    queued_rules: list[str] = []  # the rule of each task queued
    deduplicated_rules: list[str] = []
    for part, reply in applied:
        queued += reply[1]
        skipped = reply[2]
        if not skipped:
            queued_rules += part.rules
            continue
        deduplicated += skipped
        at = {int(p) - 1 for p in reply[3:]}
        for i, rule in enumerate(part.rules):
            (deduplicated_rules if i in at else queued_rules).append(rule)
    counters = Counter({"queued": queued, "deduplicated": deduplicated})
    for what, rules in (("queued", queued_rules), ("deduplicated", deduplicated_rules)):
        counters.update({f"{rule}|{what}": c for rule, c in Counter(rules).items()})
    return counters

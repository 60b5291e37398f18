"""Batches spanning hash slots of a Redis Cluster: a transactional outbox.

A Lua script may touch keys of one slot only. On a cluster, a watcher's commit
(``commit.lua``, in the watcher's slot) writes the tasks that fall in that slot, releases
the batch's events and records the other tasks in the watcher's outbox as one entry of
*parts*, one part per slot: all or nothing, as on a single server. Then:

1. each part is applied in its own slot by ``apply.lua``, which records the batch id
   there in the same step: a part applied again writes nothing and answers as the
   first time did;
2. once every part answered, ``settle.lua`` (in the watcher's slot) removes the entry
   and adds the parts' counters; only the call that removes it counts.

The router that committed the batch applies and settles it at once. Should it die (or
a slot be unreachable) in between, the entry stays in the outbox, and any router of the
watcher finishes it once it is older than a grace period (:meth:`Outbox.sweep`): the
steps are idempotent, so two routers finishing one entry do it once. Every task is
queued exactly once, also without a dedup set.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack
import redis
from redis.cluster import RedisCluster

from ..rules.plan import PlannedTask
from .cluster import SLOT_ERRORS, layout_of
from .keys import HISTORY_TTL_S, DramatiqKeys, WatcherKeys, applied_keys
from .keyspace import text
from .resilience import ReplicaWait
from .scripts import Scripts, refusal, script_and_wait, wrong_type
from .slots import key_slot

APPLIED_NOW, APPLIED_BEFORE = 1, 2

#: Most outbox entries one sweep reads and finishes.
SWEEP_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Part:
    """The tasks of a batch that fall in one hash slot, as ``apply.lua`` takes them."""

    slot: int
    keys: list[str]  # the part's keys, each once (apply.lua's KEYS[3..])
    tasks: bytes  # MessagePack, see apply.lua's header
    rules: list[str]  # the rule of each task, in order

    def script_keys(self) -> list[str]:
        """apply.lua's KEYS: this slot's applied markers, then the part's keys."""
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


def pack_tasks(
    tasks: Sequence[PlannedTask],
    script_keys: list[str],
    dramatiq: DramatiqKeys,
    event: Callable[[PlannedTask], Any],
    *,
    with_rules: bool = True,
) -> bytes:
    """``tasks`` as the MessagePack array of commit.lua and apply.lua; their keys are
    appended to ``script_keys`` (each once) and named by index. ``event(task)`` is what
    the script gets as the task's event (its index in the batch, or its text)."""
    index = {name: i for i, name in enumerate(script_keys, 1)}

    def key(name: str) -> int:
        found = index.get(name)
        if found is None:
            script_keys.append(name)
            found = index[name] = len(script_keys)
        return found

    # per task, the indexes are looked up without a call: they start at 1, so
    # ``index.get(name) or key(name)`` calls key() only for a key not seen yet
    queues: dict[str, tuple[int, int]] = {}  # Dramatiq queue -> indexes of list, hash
    planned: list[tuple[Any, ...]] = []
    add = planned.append
    for t in tasks:
        dedup = (index.get(t.set) or key(t.set)) if t.set is not None else 0
        rule = t.rule if with_rules else ""
        m = t.message
        if m is None:
            queue = index.get(t.queue) or key(t.queue)
            add(("r", dedup, queue, 0, t.task, b"", "", event(t), rule))
            continue
        found = queues.get(m.queue_name)
        if found is None:
            found = queues[m.queue_name] = (
                key(dramatiq.queue(m.queue_name)),
                key(dramatiq.messages(m.queue_name)),
            )
        add(("d", dedup, found[0], found[1], t.task, m.payload, m.redis_message_id, event(t), rule))
    return msgpack.packb(planned, use_bin_type=False) if planned else b""


def target_slot(task: PlannedTask, dramatiq: DramatiqKeys) -> int:
    """The slot of a task's keys (its target's; ``check`` makes its dedup set share it)."""
    m = task.message
    return key_slot(dramatiq.queue(m.queue_name) if m is not None else task.queue)


def split(
    tasks: Sequence[PlannedTask], home_slot: int, dramatiq: DramatiqKeys
) -> tuple[list[PlannedTask], dict[int, list[PlannedTask]]]:
    """The tasks of the watcher's slot, and the others by slot."""
    home: list[PlannedTask] = []
    away: dict[int, list[PlannedTask]] = {}
    for t in tasks:
        slot = target_slot(t, dramatiq)
        if slot == home_slot:
            home.append(t)
        else:
            away.setdefault(slot, []).append(t)
    return home, away


def parts_of(
    away: dict[int, list[PlannedTask]],
    events: Sequence[bytes],
    dramatiq: DramatiqKeys,
    *,
    with_events: bool,
) -> list[Part]:
    """One part per slot (``with_events``: each task carries its event's text, for the
    TRIGGER lines of a listener channel)."""
    parts = []
    for slot, tasks in sorted(away.items()):
        keys = list(applied_keys(slot))  # apply.lua's KEYS[1..2]: the tasks' keys follow
        packed = pack_tasks(
            tasks, keys, dramatiq, (lambda t: events[t.event_index]) if with_events else _no_event
        )
        parts.append(Part(slot, keys[2:], packed, [t.rule for t in tasks]))
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

    def finish(self, entry: Entry) -> dict[str, int] | None:
        """Apply every part of ``entry`` and settle it; return its counters (None when
        another router settled it first)."""
        counters: Counter[str] = Counter()
        for part, reply in self.apply(entry):
            count(counters, part, reply)
        if not self.settle(entry.batch_id, counters):
            return None
        return {name: c for name, c in counters.items() if c}

    def apply(self, entry: Entry) -> list[tuple[Part, Any]]:
        """Apply every part in its slot (once); each part with apply.lua's reply.

        The parts of one node go in one pipeline on a connection to it (with ``wait``, a
        ``WAIT`` closes it), every node's sent before any reply is read: one round trip
        for the whole entry, however many slots. A node that lost the script is given it
        and asked again.
        """
        cluster = cast(RedisCluster, self.cluster.client)
        script = self.cluster["apply"]
        by_node: dict[str, tuple[Any, list[Part]]] = {}
        for part in entry.parts:
            node = cluster.nodes_manager.get_node_from_slot(part.slot)
            by_node.setdefault(node.name, (node, []))[1].append(part)
        try:
            sent = [
                (node, parts, self._send(cluster.get_redis_connection(node), entry, parts))
                for node, parts in by_node.values()
            ]
            replies: list[tuple[Part, Any]] = []
            for node, parts, pending in sent:
                results = pending.read()
                if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
                    client = cluster.get_redis_connection(node)
                    client.script_load(script.script)  # a new primary, a restart
                    results = self._send(client, entry, parts).read()
                failed = next((r for r in results if isinstance(r, Exception)), None)
                if failed is not None:
                    raise failed
                replies += zip(parts, results, strict=True)
        except (redis.ConnectionError, redis.TimeoutError, *SLOT_ERRORS):
            layout_of(cluster).refresh()  # a failover or a migration: ask again
            raise
        return replies

    def _send(self, client: redis.Redis, entry: Entry, parts: list[Part]) -> Sent:
        """Send apply.lua for each of ``parts`` on a connection of ``client`` (a node)."""
        sha = self.cluster["apply"].sha
        commands: list[tuple[Any, ...]] = []
        for part in parts:
            keys = part.script_keys()
            commands.append(
                ("EVALSHA", sha, len(keys), *keys, entry.batch_id, entry.score, part.tasks,
                 self.marker_ttl_ms, entry.channel, entry.prefix)
            )  # fmt: skip
        if self.wait is not None:
            commands.append(("WAIT", self.wait.replicas, self.wait.timeout_ms))
        return Sent(client.connection_pool, commands, len(parts))

    def settle(self, batch_id: str, counters: Counter[str]) -> bool:
        """Remove the entry and add its counters; False when it was settled before."""
        k = self.keys
        keys = [k.outbox, k.outbox_at, k.stats, k.history_at(int(time.time()) // 60)]
        args: list[Any] = [batch_id, self.history_ttl_s]
        for name, count in counters.items():
            if count:
                args += (name, count)
        return bool(self._run(self.home, "settle", keys, args))

    def _run(self, scripts: Scripts, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` (with ``wait``: and ``WAIT`` on the node of its keys)."""
        if self.wait is None:
            return scripts[name](keys=keys, args=args)
        reply, _ = script_and_wait(scripts.client, scripts[name], keys, args, self.wait)
        return reply

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


class Sent:
    """Commands sent on a connection of their own, their replies not read yet."""

    def __init__(
        self, pool: redis.ConnectionPool, commands: list[tuple[Any, ...]], keep: int
    ) -> None:
        self.pool, self.count, self.keep = pool, len(commands), keep
        self.connection: Any = cast(Any, pool.get_connection())  # untyped methods below
        try:
            self.connection.send_packed_command(self.connection.pack_commands(commands))
        except BaseException:
            self.connection.disconnect()
            pool.release(self.connection)
            raise

    def read(self) -> list[Any]:
        """Every reply (an error reply as its exception), the first ``keep`` of them."""
        results: list[Any] = []
        try:
            for _ in range(self.count):
                try:
                    results.append(self.connection.read_response())
                except redis.ResponseError as e:
                    results.append(e)
        except BaseException:
            self.connection.disconnect()  # replies still due: not reusable
            raise
        finally:
            self.pool.release(self.connection)
        return results[: self.keep]


def count(counters: Counter[str], part: Part, reply: Any) -> None:
    """Add a part's counters, read from its apply's reply (the first apply's, if it was
    repeated), to ``counters``."""
    refused = refusal(reply, part.script_keys())
    if refused is not None:
        raise wrong_type(refused, "this part of the batch waits in the outbox")
    counters["queued"] += int(reply[1])
    counters["deduplicated"] += int(reply[2])
    skipped = {int(p) - 1 for p in reply[3:]}
    for i, rule in enumerate(part.rules):
        counters[f"{rule}|deduplicated" if i in skipped else f"{rule}|queued"] += 1

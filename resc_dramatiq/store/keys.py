"""Every Redis key name this package reads or writes, defined once.

A watcher's keys (``T`` is its ``taken_queue``, ``I`` its ``input_queue``):

* ``I`` input list; ``T/<instance>`` taken list of one router instance (``T`` itself is
  resc's own, reclaimed at start);
* ``I/committed/<instance>`` marker of the instance's last commit, so that a commit
  retried after a lost reply is recognised instead of redone;
* ``T/instances`` sorted set: instance -> heartbeat expiry (ms, Redis clock);
  ``T/beats`` the same instances -> time of their last heartbeat (ms, for ``status``);
* ``I/stats`` hash of counters; ``I/attempts`` hash of failed attempts per event;
* ``I/history/<minute>`` the same counters for one minute (``<minute>`` is unix
  seconds // 60), written by each commit beside ``I/stats`` and expiring after
  :data:`HISTORY_TTL_S`: the dashboard's charts, surviving its restarts;
* ``dead_queue`` dead-letter list, ``unmatched_queue`` optional list;
* ``I/outbox`` hash (batch id -> entry) and ``I/outbox/at`` sorted set (batch id -> ms):
  on a Redis Cluster, the parts of committed batches that fall in other hash slots,
  until each is applied in its slot (see :mod:`.outbox`);
* ``I/lineage/<n>`` hashes (``t:<task>``, ``m:<message id>`` -> lineage record), with
  ``lineage`` on: one per :data:`LINEAGE_BUCKETS`-th of its ttl (``<n>`` is the time in
  ms // that span), each expiring a ttl and a span after its last write (docs/lineage.md).

In each other slot a batch's part is applied in, ``resc/applied/{t}`` (batch id ->
result) and ``resc/applied/at/{t}`` (batch id -> ms) record the parts applied there,
where ``t`` is a tag that hashes to that slot (see :func:`applied_keys`).

``<done list>/messages`` is a sorted set of the Dramatiq messages whose done or failure
event (or inline commit) was written to that list, by message id, scored by the time:
the worker's writes are idempotent per message. Markers older than their time to live
(a day by default) are forgotten a bounded number at a time by the writes themselves.

Dramatiq's own keys, per namespace ``ns`` and queue ``q``: ``ns:q`` the queue (a list
of Redis message ids), ``ns:q.msgs`` their payloads, ``ns:q.DQ`` its delay queue,
``ns:q.XQ`` its dead-lettered messages, ``ns:__heartbeats__`` the workers' heartbeats,
``ns:__acks__.<worker>.q`` the messages of ``q`` a worker holds.

``resc/layout`` (:data:`LAYOUT_KEY`) is the hash of the keyspace's layout versions and
of the releases started on it (see :mod:`.layout`): one key, global.

The join groups a watcher writes are under ``resc/joins/`` (``resc/joins/{tag}/`` with
its input list's hash tag): see :class:`~.joins.JoinKeys`.

A schedule's state is the hash ``resc/schedules/<name>`` (``resc/schedules/{tag}/<name>``
when its target key has a hash tag; see ``lua/fire.lua`` and :func:`schedule_state`): its
last fired tick, when and by whom, and its lag.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from ..compat import HASH_SLOTS, key_slot
from ..config.model import WatcherSpec
from ..rules.messages import delay_queue_name

#: How long a minute of history is kept (``I/history/<minute>``), in seconds.
HISTORY_TTL_S = 3 * 3600

#: Dramatiq's companion keys of a queue, never targets themselves.
DRAMATIQ_SUFFIXES = (".msgs", ".DQ", ".XQ", ".DQ.msgs", ".XQ.msgs", ".acks")


@dataclass(frozen=True, slots=True)
class WatcherKeys:
    """Key names of one watcher, as seen by one router instance."""

    input: str
    taken: str
    committed: str
    taken_base: str
    instances: str
    beats: str
    stats: str
    history: str  # prefix of the per-minute hashes, see history_at
    attempts: str
    dead: str
    unmatched: str | None
    outbox: str
    outbox_at: str
    lineage: str  # prefix of the lineage buckets, see lineage_at

    @classmethod
    def of(cls, spec: WatcherSpec, instance: str) -> WatcherKeys:
        """Keys of ``spec`` for router ``instance`` (``""``: no instance, e.g. ``status``)."""
        return cls(
            input=spec.input_queue,
            taken=_taken(spec.taken_queue, instance),
            committed=f"{spec.input_queue}/committed/{instance}",
            taken_base=spec.taken_queue,
            instances=f"{spec.taken_queue}/instances",
            beats=f"{spec.taken_queue}/beats",
            stats=f"{spec.input_queue}/stats",
            history=f"{spec.input_queue}/history",
            attempts=f"{spec.input_queue}/attempts",
            dead=spec.dead_queue,
            unmatched=spec.unmatched_queue,
            outbox=f"{spec.input_queue}/outbox",
            outbox_at=f"{spec.input_queue}/outbox/at",
            lineage=f"{spec.input_queue}/lineage",
        )

    def history_at(self, minute: int) -> str:
        """The hash of the counters of ``minute`` (unix seconds // 60)."""
        return f"{self.history}/{minute}"

    def lineage_at(self, now_ms: int, ttl_ms: int) -> str:
        """The lineage bucket written at ``now_ms`` (records kept ``ttl_ms``)."""
        return f"{self.lineage}/{now_ms // lineage_span_ms(ttl_ms)}"

    def lineage_recent(self, now_ms: int, ttl_ms: int) -> list[str]:
        """The lineage buckets that may hold a record at ``now_ms``, newest first (one
        span ahead too: a router's clock may run ahead of Redis's)."""
        n = now_ms // lineage_span_ms(ttl_ms)
        return [f"{self.lineage}/{i}" for i in range(n + 1, n - LINEAGE_BUCKETS - 1, -1)]

    def taken_of(self, instance: str) -> str:
        """The taken list of another ``instance`` (``""``: resc's own taken list)."""
        return _taken(self.taken_base, instance)


#: A watcher's lineage records are kept in this many buckets of time per ttl.
LINEAGE_BUCKETS = 8


def lineage_span_ms(ttl_ms: int) -> int:
    """How long one lineage bucket is written to (ms)."""
    return max(1, -(-ttl_ms // LINEAGE_BUCKETS))


def _taken(taken_queue: str, instance: str) -> str:
    """``T/<instance>``, or ``T`` itself (resc's own taken list) for no instance."""
    return f"{taken_queue}/{instance}" if instance else taken_queue


#: The hash of the keyspace's layout versions (see :mod:`.layout`).
LAYOUT_KEY = "resc/layout"
#: Prefixes of the keys of schedules, of a cluster's applied outbox parts, of joins.
OWN_PREFIXES = ("resc/schedules/", "resc/applied/", "resc/joins/")
#: Dramatiq's own keys in a namespace, beside its queues (``ns:`` left out).
DRAMATIQ_OWN = ("__heartbeats__", "__acks__.")


def own_key(name: str, specs: Iterable[WatcherSpec]) -> bool:
    """Whether ``name`` is a key the routers keep for themselves, never a target or a
    dedup set: a watcher's taken lists and instances, its stats, attempts, history,
    commit markers, outbox and dead letters; schedule states, applied outbox parts, the
    layout versions. (A watcher's input list is no such key: a rule may feed another
    watcher.)"""
    if name == LAYOUT_KEY or name.startswith(OWN_PREFIXES):
        return True
    for spec in specs:
        k = WatcherKeys.of(spec, "")
        fixed = (k.taken_base, k.stats, k.attempts, k.dead, k.outbox, k.outbox_at)
        prefixes = (f"{k.taken_base}/", f"{k.history}/", f"{k.input}/committed/", f"{k.lineage}/")
        if name in fixed or name.startswith(prefixes):
            return True
    return False


def dramatiq_own(queue: str) -> bool:
    """Whether ``queue`` (a name in a Dramatiq namespace) is no queue but one of
    Dramatiq's own keys: heartbeats, acks, a queue's companions (``.msgs``, ``.XQ``...)."""
    return queue.startswith(DRAMATIQ_OWN) or queue.endswith(DRAMATIQ_SUFFIXES)


@functools.cache  # asked once per part of every outbox entry: at most one pair per slot
def applied_keys(slot: int) -> tuple[str, str]:
    """The keys recording the outbox parts applied in hash ``slot``: (results hash, times
    sorted set), ``resc/applied/{t}`` and ``resc/applied/at/{t}`` where ``t`` is the
    shortest number whose slot is ``slot``."""
    tag = _slot_tags()[slot]
    return f"resc/applied/{{{tag}}}", f"resc/applied/at/{{{tag}}}"


@functools.cache
def _slot_tags() -> list[str]:
    """For each hash slot, the shortest number (as text) that hashes to it."""
    tags: list[str | None] = [None] * HASH_SLOTS
    missing, n = HASH_SLOTS, 0
    while missing:
        slot = key_slot(str(n).encode())
        if tags[slot] is None:
            tags[slot], missing = str(n), missing - 1
        n += 1
    return [t for t in tags if t is not None]


def message_markers(done_list: str) -> str:
    """The sorted set of the Dramatiq messages whose event was written to ``done_list``
    (message id -> when, ms), kept for a day by default."""
    return f"{done_list}/messages"


@dataclass(frozen=True, slots=True)
class DramatiqKeys:
    """Dramatiq's Redis keys in one namespace (``dramatiq`` by default)."""

    namespace: str = "dramatiq"

    def queue(self, queue: str) -> str:
        """The list of Redis message ids of ``queue`` (a delay queue name works too)."""
        return f"{self.namespace}:{queue}"

    def messages(self, queue: str) -> str:
        """The hash of the payloads of ``queue``'s messages."""
        return f"{self.namespace}:{queue}.msgs"

    def delayed(self, queue: str) -> str:
        """The delay queue of ``queue`` (messages with an ``eta``)."""
        return self.queue(delay_queue_name(queue))

    def dead(self, queue: str) -> str:
        """The sorted set of ``queue``'s dead-lettered message ids."""
        return f"{self.namespace}:{queue}.XQ"

    def dead_messages(self, queue: str) -> str:
        """The hash of the payloads of ``queue``'s dead-lettered messages."""
        return f"{self.namespace}:{queue}.XQ.msgs"

    def acks(self, worker: str, queue: str) -> str:
        """The set of ``queue``'s message ids that worker ``worker`` holds (fetched, not
        yet acked); ``worker`` is a broker id of :attr:`heartbeats`."""
        return f"{self.namespace}:__acks__.{worker}.{queue}"

    @property
    def heartbeats(self) -> str:
        """The sorted set of the workers' heartbeats (broker id -> ms)."""
        return f"{self.namespace}:__heartbeats__"


def hash_tag(key: str) -> str:
    """The hash tag of ``key`` with its braces (``{w}``), or ``""``: what Redis Cluster
    hashes instead of the whole name."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start : end + 1] if start >= 0 and end > start + 1 else ""


def schedule_state(name: str, target: str = "") -> str:
    """The state hash of schedule ``name``: last tick fired, when, its lag, by whom.

    ``resc/schedules/<name>``; when the ``target`` key it pushes to has a hash tag,
    ``resc/schedules/{tag}/<name>``: in the target's slot on a Redis Cluster, so
    ``fire.lua`` writes both in one step.
    """
    tag = hash_tag(target)
    return f"resc/schedules/{tag}/{name}" if tag else f"resc/schedules/{name}"

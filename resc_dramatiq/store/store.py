"""The Redis side of one watcher: take, commit, heartbeat, reclaim, leave.

A :class:`WatcherStore` binds one watcher's keys (see :mod:`.keys`), the scripts (see
:mod:`.scripts`) and the commit codec (see :mod:`.commit`) to one Redis client. The
router has one per watcher; a worker routing inline has one per watcher too, and
commits through the same codec and the same script. Every key reaches Lua through
``KEYS`` and every value through ``ARGV``.

Over ~250 lines on purpose: one watcher's Redis side, with the pending take and commit
its loop holds.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial

from ..errors import WrongType
from ..rules.batch import Batch
from ..rules.model import WatcherRules
from ..rules.ruleset import RuleSet
from .commit import (
    MARKER_TTL_MS,
    CommitCodec,
    CommitResult,
    CommitSettings,
    DoneMessage,
    EncodedCommit,
)
from .keys import DramatiqKeys, WatcherKeys
from .keyspace import text
from .outbox import Meanwhile, Outbox
from .resilience import Replication, ReplicaWait, is_transient
from .rule_counts import RuleCounts, add_counters
from .scripts import Scripts
from .slots import key_slot
from .wire import Pending, send

logger = logging.getLogger(__name__)


class WatcherStore:
    """One watcher's keys and scripts on one client, for one router instance."""

    def __init__(
        self,
        *,
        scripts: Scripts,
        settings: CommitSettings,
        instance: str,
        cluster: Scripts | None = None,
        wait: ReplicaWait | None = None,
        replication: Replication | None = None,
    ) -> None:
        self.scripts = scripts
        self.client = scripts.client
        self.keys: WatcherKeys = settings.keys
        self.settings = settings
        self.instance = instance
        self.codec = CommitCodec(settings)
        #: Every commit waits for that many replicas (``WAIT`` on its connection); how
        #: many acknowledged goes to ``replication``, which logs a shortfall once.
        self.wait, self.replication = wait, replication
        #: The next batch's commit, encoded ahead (see :meth:`prepare`).
        self._prepared: EncodedCommit | None = None
        #: The per-rule counters of batches that touch many rules, written late.
        self.rule_counts = RuleCounts(partial(add_counters, self.client, self.keys))
        #: On a Redis Cluster (``cluster``: the scripts on the cluster client), the
        #: outbox of the tasks that fall in other slots than the watcher's.
        self.outbox = (
            None
            if cluster is None
            else Outbox(
                home=scripts,
                cluster=cluster,
                keys=settings.keys,
                marker_ttl_ms=settings.marker_ttl_ms,
                history_ttl_s=settings.history_ttl_s,
                wait=wait,
            )
        )

    @classmethod
    def of(
        cls,
        scripts: Scripts,
        ruleset: RuleSet,
        rules: WatcherRules,
        *,
        instance: str,
        namespace: str,
        marker_ttl_ms: int = MARKER_TTL_MS,
        cluster: Scripts | None = None,
        wait: ReplicaWait | None = None,
        replication: Replication | None = None,
    ) -> WatcherStore:
        """The store of watcher ``rules`` of ``ruleset`` for ``instance``, its commits
        in Dramatiq ``namespace`` (the router's and the worker's alike).

        On a Redis Cluster, ``scripts`` are on the client of the watcher's slot and
        ``cluster`` on the cluster client (for the outbox's other slots); ``wait``:
        every commit, and each step of the outbox, waits for that many replicas.
        """
        lineage = rules.spec.kept_lineage
        settings = CommitSettings(
            keys=WatcherKeys.of(rules.spec, instance),
            dramatiq=DramatiqKeys(namespace),
            channel=ruleset.config.spec.listener_channel,
            max_attempts=rules.spec.max_attempts,
            marker_ttl_ms=marker_ttl_ms,
            home_slot=None if cluster is None else key_slot(rules.spec.input_queue),
            lineage_ttl_ms=lineage.ttl_s * 1000 if lineage is not None else 0,
            lineage_max=lineage.max_records if lineage is not None else 0,
        )
        return cls(
            scripts=scripts,
            settings=settings,
            instance=instance,
            cluster=cluster,
            wait=wait,
            replication=replication,
        )

    def take(self, limit: int) -> list[bytes]:
        """Move up to ``limit`` events to the taken list without blocking; oldest first."""
        return list(self.scripts["take"](keys=[self.keys.input, self.keys.taken], args=[limit]))

    def send_take(self, limit: int) -> PendingTake:
        """Send a :meth:`take` without waiting; ``events()`` reads them."""
        return PendingTake(self.scripts["take"].send([self.keys.input, self.keys.taken], [limit]))

    def take_blocking(self, timeout_s: float) -> bytes | None:
        """Wait up to ``timeout_s`` for one event and move it to the taken list."""
        timeout: int = timeout_s  # type: ignore[assignment]  # Redis takes fractional seconds
        event = self.client.blmove(self.keys.input, self.keys.taken, timeout, "RIGHT", "LEFT")
        return event.encode() if isinstance(event, str) else event

    def holds_events(self) -> bool:
        """True when this instance's taken list is not empty."""
        return bool(self.client.llen(self.keys.taken))

    def commit(self, batch: Batch) -> PendingCommit:
        """Send ``batch``'s commit without waiting; :meth:`PendingCommit.result` waits
        and gives the final answer (the outbox applied, the counters added).

        Redis runs the script while the caller goes on (planning the next batch) in the
        same thread: no second thread waits for the GIL to read the reply.
        """
        prepared, self._prepared = self._prepared, None
        if prepared is None or prepared.batch is not batch:
            prepared = self.codec.encode(batch, per_rule_later=RuleCounts.later(batch))
        return self._send(prepared)

    def prepare(self, batch: Batch) -> None:
        """Encode ``batch``'s commit now, for the :meth:`commit` of that batch that
        follows (the loop does it while an outbox entry is applied)."""
        self._prepared = self.codec.encode(batch, per_rule_later=RuleCounts.later(batch))

    def commit_message(self, batch: Batch, done: DoneMessage) -> CommitResult:
        """Commit a worker's done event ``done`` (planned as ``batch``), once per
        Dramatiq message; the final answer, as :meth:`commit`'s."""
        return self._send(self.codec.encode(batch, done)).result()

    def _send(self, encoded: EncodedCommit) -> PendingCommit:
        return PendingCommit(self, encoded, send(self.client, [encoded.call], self.wait))

    def finish(
        self, encoded: EncodedCommit, result: CommitResult, meanwhile: Meanwhile = None
    ) -> CommitResult:
        """After a commit on a cluster: apply and settle its outbox entry (the tasks in
        other slots), ``meanwhile`` run while its parts are applied; the result then
        counts them too. A repeated commit finishes the entry its first run stored, if
        it is still there. An unreachable slot (or a key of the wrong type there) leaves
        the entry in the outbox, for a sweep."""
        if self.outbox is None or encoded.outbox is None:
            return result
        try:
            entry = (
                encoded.outbox if not result.repeated else self.outbox.read(encoded.outbox.batch_id)
            )
            counted = self.outbox.finish(entry, meanwhile) if entry is not None else None
        except Exception as e:
            if not is_transient(e) and not isinstance(e, WrongType):
                raise
            logger.warning(
                "watcher %r: a batch's tasks in other slots wait in the outbox: %s",
                self.keys.input,
                e,
            )
            return result
        if not counted:
            return result
        return dataclasses.replace(
            result,
            queued=result.queued + counted.get("queued", 0),
            deduplicated=result.deduplicated + counted.get("deduplicated", 0),
        )

    def heartbeat(self, ttl_ms: int) -> list[str]:
        """Mark this instance alive for ``ttl_ms``; return the expired instances."""
        keys = [self.keys.instances, self.keys.beats]
        return [
            text(name)
            for name in self.scripts["heartbeat"](keys=keys, args=[self.instance, ttl_ms])
        ]

    def reclaim(self, instance: str, *, own: bool) -> int:
        """Hand ``instance``'s taken list back to the input, first in line.

        ``own`` skips the liveness check (an instance's own list at start; ``""`` is
        resc's own taken list). Returns the number of events handed back (-1: the
        instance came back to life).
        """
        k = self.keys
        keys = [k.instances, k.input, k.taken_of(instance), k.beats]
        moved: int = self.scripts["reclaim"](keys=keys, args=[instance, "1" if own else "0"])
        return moved

    def leave(self) -> int:
        """Hand this instance's taken list back and remove it from the live instances.

        One script, so an instance never leaves while its taken list holds events.
        Returns the number of events handed back.
        """
        k = self.keys
        keys = [k.instances, k.input, k.taken, k.beats]
        moved: int = self.scripts["leave"](keys=keys, args=[self.instance])
        return moved


class PendingTake:
    """A take sent, its events not read yet."""

    def __init__(self, sent: Pending) -> None:
        self.sent = sent

    def events(self) -> list[bytes]:
        """Wait for the events taken, oldest first."""
        return list(self.sent.replies()[0])

    def discard(self) -> None:
        """Drop the reply (the connection is closed; the take may or may not have run)."""
        self.sent.discard()


class PendingCommit:
    """A commit sent, its reply not read yet."""

    def __init__(self, store: WatcherStore, encoded: EncodedCommit, sent: Pending) -> None:
        self.store, self.encoded, self.sent = store, encoded, sent
        self._committed: CommitResult | None = None

    @property
    def applies_outbox(self) -> bool:
        """Whether :meth:`result` applies tasks in other cluster slots after the commit."""
        return self.encoded.outbox is not None and self.store.outbox is not None

    def committed(self) -> CommitResult:
        """The commit script's own answer: raise
        :class:`~resc_dramatiq.errors.OwnershipLost` when the batch is no longer ours,
        :class:`~resc_dramatiq.errors.WrongType` when a key holds another type. A retry
        after a lost reply is recognised by the batch id."""
        if self._committed is None:
            self._committed = self.encoded.result(self.sent.replies()[0])
            if self.store.replication is not None and self.sent.acks is not None:
                self.store.replication.acked(self.sent.acks)
        return self._committed

    def result(self, meanwhile: Meanwhile = None) -> CommitResult:
        """The final answer: committed, its tasks in other cluster slots applied (or left
        in the outbox for a sweep), its late per-rule counters added up. ``meanwhile``
        runs while those tasks are applied, if there are any."""
        result = self.store.finish(self.encoded, self.committed(), meanwhile)
        if self.encoded.per_rule_later:
            self.store.rule_counts.committed(self.encoded.batch, result)
        return result

    def discard(self) -> None:
        """Drop the reply (the connection is closed; the commit may or may not have run)."""
        self.sent.discard()

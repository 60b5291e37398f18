"""The Redis side of one watcher: take, commit, heartbeat, reclaim, leave.

A :class:`WatcherStore` binds one watcher's keys (see :mod:`.keys`), the scripts (see
:mod:`.scripts`) and the commit codec (see :mod:`.commit`) to one Redis client. The
router has one per watcher; a worker routing inline has one per watcher too, and
commits through the same codec and the same script. Every key reaches Lua through
``KEYS`` and every value through ``ARGV``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import redis

from ..rules.model import WatcherRules
from ..rules.plan import Batch
from ..rules.ruleset import RuleSet
from .commit import (
    MARKER_TTL_MS,
    CommitCodec,
    CommitResult,
    CommitSettings,
    DoneMessage,
    EncodedCommit,
)
from .keys import HISTORY_TTL_S, DramatiqKeys, WatcherKeys
from .keyspace import text
from .outbox import Outbox
from .resilience import Replication, ReplicaWait
from .scripts import Scripts, refusal, run_and_wait, wrong_type
from .slots import key_slot


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
    ) -> None:
        self.scripts = scripts
        self.client = scripts.client
        self.keys: WatcherKeys = settings.keys
        self.instance = instance
        self.codec = CommitCodec(settings)
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
    ) -> WatcherStore:
        """The store of watcher ``rules`` of ``ruleset`` for ``instance``, its commits
        in Dramatiq ``namespace`` (the router's and the worker's alike).

        On a Redis Cluster, ``scripts`` are on the client of the watcher's slot and
        ``cluster`` on the cluster client (for the outbox's other slots); ``wait``:
        the outbox's steps wait for replicas (the router's commits wait on their own).
        """
        settings = CommitSettings(
            keys=WatcherKeys.of(rules.spec, instance),
            dramatiq=DramatiqKeys(namespace),
            channel=ruleset.config.spec.listener_channel,
            max_attempts=rules.spec.max_attempts,
            marker_ttl_ms=marker_ttl_ms,
            home_slot=None if cluster is None else key_slot(rules.spec.input_queue),
        )
        return cls(
            scripts=scripts, settings=settings, instance=instance, cluster=cluster, wait=wait
        )

    def take(self, limit: int) -> list[bytes]:
        """Move up to ``limit`` events to the taken list without blocking; oldest first."""
        return list(self.scripts["take"](keys=[self.keys.input, self.keys.taken], args=[limit]))

    def send_take(self, limit: int) -> Pending:
        """Send a :meth:`take` without waiting; ``reply()`` gives the events."""
        return Pending(self.scripts["take"], [self.keys.input, self.keys.taken], [limit])

    def take_blocking(self, timeout_s: float) -> bytes | None:
        """Wait up to ``timeout_s`` for one event and move it to the taken list."""
        timeout: int = timeout_s  # type: ignore[assignment]  # Redis takes fractional seconds
        event = self.client.blmove(self.keys.input, self.keys.taken, timeout, "RIGHT", "LEFT")
        return event.encode() if isinstance(event, str) else event

    def holds_events(self) -> bool:
        """True when this instance's taken list is not empty."""
        return bool(self.client.llen(self.keys.taken))

    def send_commit(
        self, batch: Batch, *, per_rule_later: bool = False, wait: ReplicaWait | None = None
    ) -> PendingCommit:
        """Send the commit without waiting; :meth:`PendingCommit.result` waits.

        Redis runs the script while the caller goes on (computing the next batch) in the
        same thread: no second thread waits for the GIL to read the reply.
        ``per_rule_later``: the per-rule counters come back in the result, for
        :meth:`add_counters` (see :meth:`CommitCodec.encode`). With ``wait``, the result
        also waits for that many replicas to acknowledge the commit (or the timeout;
        :attr:`PendingCommit.acks` says how many did).
        """
        encoded = self.codec.encode(batch, per_rule_later=per_rule_later)
        pending = Pending(self.scripts["commit"], encoded.keys, encoded.args, wait)
        return PendingCommit(pending, encoded)

    def commit_message(self, batch: Batch, done: DoneMessage) -> CommitResult:
        """Commit a worker's done event ``done`` (planned as ``batch``), once per
        Dramatiq message."""
        encoded = self.codec.encode(batch, done)
        return self.finish(encoded, encoded.result(self._run(encoded)))

    def finish(self, encoded: EncodedCommit, result: CommitResult) -> CommitResult:
        """After a commit on a cluster: apply and settle its outbox entry (the tasks in
        other slots); the result then counts them too. A repeated commit finishes the
        entry its first run stored, if it is still there."""
        if self.outbox is None or encoded.outbox is None:
            return result
        entry = encoded.outbox if not result.repeated else self.outbox.read(encoded.outbox.batch_id)
        counted = self.outbox.finish(entry) if entry is not None else None
        if not counted:
            return result
        return dataclasses.replace(
            result,
            queued=result.queued + counted.get("queued", 0),
            deduplicated=result.deduplicated + counted.get("deduplicated", 0),
        )

    def _run(self, encoded: EncodedCommit) -> Any:
        return self.scripts["commit"](keys=encoded.keys, args=encoded.args)

    def add_counters(self, counters: Mapping[str, int]) -> None:
        """Add ``counters`` to the watcher's stats hash and to the history of the current
        minute (as the commit script does), in one transaction."""
        history = self.keys.history_at(int(time.time()) // 60)
        pipe = self.client.pipeline(transaction=True)
        for name, increment in counters.items():
            pipe.hincrby(self.keys.stats, name, increment)
            pipe.hincrby(history, name, increment)
        pipe.expire(history, HISTORY_TTL_S)
        pipe.execute()

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


def emit(
    scripts: Scripts,
    *,
    markers: str,
    queue: str,
    event: str,
    message_id: str,
    release_set: str | None,
    marker_ttl_ms: int,
    wait: ReplicaWait | None = None,
    replication: Replication | None = None,
) -> bool:
    """Push a message's done or failure ``event`` onto ``queue``, once per message.

    Returns False when this message's event was written before (nothing written now).
    Raises :class:`~resc_dramatiq.errors.WrongType` (nothing written) when a key
    holds another type. With ``wait``, a ``WAIT`` follows on the same connection; the
    number of replicas that acknowledged goes to ``replication``.
    """
    keys = [markers, queue, release_set or markers]
    args = [event, message_id, marker_ttl_ms, "1" if release_set else "0"]
    if wait is None:
        reply = scripts["emit"](keys=keys, args=args)
    else:
        reply, acks = run_and_wait(scripts["emit"], keys, args, wait)
        if replication is not None:
            replication.acked(acks)
    refused = refusal(reply, keys)
    if refused is not None:
        raise wrong_type(refused, "nothing was written")
    return bool(reply[0] == 1)


class Pending:
    """A script sent on a connection of its own, its reply not read yet.

    Read it with :meth:`reply` or drop it with :meth:`discard` (the connection is
    closed: the reply, if any, is lost; the script may or may not have run). With
    ``wait``, a ``WAIT`` follows the script on the same connection (so it waits for
    this script's writes); :attr:`acks` is then the number of replicas that
    acknowledged them.
    """

    def __init__(
        self, script: Any, keys: list[str], args: list[Any], wait: ReplicaWait | None = None
    ) -> None:
        self.script, self.keys, self.args, self.wait = script, keys, args, wait
        self.acks: int | None = None
        self.pool: redis.ConnectionPool = script.registered_client.connection_pool
        self.connection = self.pool.get_connection()
        try:
            self.connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            if wait is not None:
                self.connection.send_command("WAIT", wait.replicas, wait.timeout_ms)
        except BaseException:
            self.discard()
            raise

    def reply(self) -> Any:
        """Wait for the reply (a script Redis no longer knows is loaded and run)."""
        try:
            reply = self.connection.read_response()  # disconnects on a connection error
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            reply = None
        except BaseException:
            if self.wait is not None:  # the WAIT's reply is still to come: not reusable
                self.connection.disconnect()
            self.pool.release(self.connection)
            raise
        try:
            if self.wait is not None:
                self.acks = int(self.connection.read_response())
        finally:
            self.pool.release(self.connection)
        if reply is None:  # it did not run: run it now (and wait on its connection)
            reply = self._run_again()
        return reply

    def _run_again(self) -> Any:
        if self.wait is None:
            return self.script(keys=self.keys, args=self.args)
        reply, self.acks = run_and_wait(self.script, self.keys, self.args, self.wait)
        return reply

    def discard(self) -> None:
        """Close the connection without reading the reply."""
        self.connection.disconnect()
        self.pool.release(self.connection)


class PendingCommit:
    """A commit script sent, its reply not read yet."""

    def __init__(self, pending: Pending, encoded: EncodedCommit) -> None:
        self.pending, self.encoded = pending, encoded

    def result(self) -> CommitResult:
        """Wait for the reply; raise :class:`~resc_dramatiq.errors.OwnershipLost` when the
        batch is no longer ours, :class:`~resc_dramatiq.errors.WrongType` when a key holds
        another type. A retry after a lost reply is recognised by the batch id."""
        return self.encoded.result(self.pending.reply())  # a repeat after NOSCRIPT is recognised

    @property
    def outbox(self) -> bool:
        """True when the batch has tasks in other slots of a cluster, to finish after."""
        return self.encoded.outbox is not None

    @property
    def acks(self) -> int | None:
        """Replicas that acknowledged the commit (None: no ``WAIT`` was asked for)."""
        return self.pending.acks

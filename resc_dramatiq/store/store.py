"""Redis keys and Lua scripts of a watcher: take, commit, heartbeat, reclaim, leave.

Keys of a watcher (``T`` is its ``taken_queue``, ``I`` its ``input_queue``):

* ``T/<instance>`` taken list of one router instance (``T`` itself is resc's own,
  reclaimed at start);
* ``I/committed/<instance>`` the id and counts of the instance's last commit, so that a
  commit retried after a lost reply is recognised instead of redone (expires in a day);
* ``T/instances`` sorted set: instance -> heartbeat expiry (ms, Redis clock);
  ``T/beats`` the same instances -> time of their last heartbeat (ms, for ``status``);
* ``I/stats`` hash of counters; ``I/attempts`` hash of failed attempts per event;
* ``dead_queue`` dead-letter list, ``unmatched_queue`` optional list.

Every key reaches Lua through ``KEYS`` and every value through ``ARGV``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import msgpack
import redis

from ..config.model import WatcherSpec
from ..errors import OwnershipLost, WrongType

STATUS_COMMITTED = 1
STATUS_ALREADY_COMMITTED = 2
STATUS_NOT_OWNED = -1
STATUS_WRONG_TYPE = -2

#: How long a commit marker is kept: longer than any outage a commit is retried across.
COMMIT_MARKER_TTL_MS = 24 * 3600 * 1000


def _script(client: redis.Redis, name: str) -> Any:
    text = resources.files(__package__).joinpath("lua", name).read_text()
    return client.register_script(text)


@dataclass(frozen=True, slots=True)
class WatcherKeys:
    """Key names of one watcher, for one router instance."""

    input: str
    taken: str
    committed: str
    taken_base: str
    instances: str
    beats: str
    stats: str
    attempts: str
    dead: str
    unmatched: str | None

    @classmethod
    def of(cls, spec: WatcherSpec, instance: str) -> WatcherKeys:
        """Keys of ``spec`` as seen by router ``instance``."""
        taken = taken_list(spec, instance)
        return cls(
            input=spec.input_queue,
            taken=taken,
            committed=f"{spec.input_queue}/committed/{instance}",
            taken_base=spec.taken_queue,
            instances=f"{spec.taken_queue}/instances",
            beats=f"{spec.taken_queue}/beats",
            stats=f"{spec.input_queue}/stats",
            attempts=f"{spec.input_queue}/attempts",
            dead=spec.dead_queue,
            unmatched=spec.unmatched_queue,
        )


def taken_list(spec: WatcherSpec, instance: str) -> str:
    """The taken list of router ``instance`` on watcher ``spec``."""
    return f"{spec.taken_queue}/{instance}"


@dataclass(slots=True)  # not frozen: made per task, and a frozen init costs
class PlannedTask:
    """A task ready for the commit script."""

    task: bytes
    queue_key: str
    set_key: str | None
    event_index: int
    rule: str = ""
    messages_key: str | None = None
    payload: bytes = b""
    redis_message_id: str = ""


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """An event whose tasks could not be computed, with the reason."""

    event: bytes
    rule: str
    error: str


@dataclass(slots=True)
class Batch:
    """What one commit writes; ``batch_id`` tells a retried commit from a new one."""

    events: Sequence[bytes]
    taken_at: float  # time.time() when the events were taken
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tasks: list[PlannedTask] = field(default_factory=list)
    failed: list[FailedEvent] = field(default_factory=list)
    unmatched: list[bytes] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a commit did."""

    queued: int
    deduplicated: int
    retried: int
    dead: int
    #: True when this batch had been committed already (a retry after a lost reply).
    repeated: bool = False


class Store:
    """The Lua scripts of the router over one Redis client."""

    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client
        self._take = _script(client, "take.lua")
        self._commit = _script(client, "commit.lua")
        self._heartbeat = _script(client, "heartbeat.lua")
        self._reclaim = _script(client, "reclaim.lua")
        self._leave = _script(client, "leave.lua")

    def take(self, keys: WatcherKeys, limit: int) -> list[bytes]:
        """Move up to ``limit`` events to the taken list without blocking; oldest first."""
        return list(self._take(keys=[keys.input, keys.taken], args=[limit]))

    def take_blocking(self, keys: WatcherKeys, timeout_s: float) -> bytes | None:
        """Wait up to ``timeout_s`` for one event and move it to the taken list."""
        timeout: int = timeout_s  # type: ignore[assignment]  # Redis takes fractional seconds
        event = self.client.blmove(keys.input, keys.taken, timeout, "RIGHT", "LEFT")
        return event.encode() if isinstance(event, str) else event

    def heartbeat(self, keys: WatcherKeys, instance: str, ttl_ms: int) -> list[str]:
        """Mark ``instance`` alive for ``ttl_ms``; return the expired instances."""
        expired = self._heartbeat(keys=[keys.instances, keys.beats], args=[instance, ttl_ms])
        return [name.decode() if isinstance(name, bytes) else name for name in expired]

    def reclaim(self, keys: WatcherKeys, spec: WatcherSpec, instance: str, *, own: bool) -> int:
        """Hand ``instance``'s taken list back to the input, first in line.

        ``own`` skips the liveness check (an instance's own list at start). Returns the
        number of events handed back (-1: the instance came back to life).
        """
        taken = taken_list(spec, instance) if instance else spec.taken_queue
        moved: int = self._reclaim(
            keys=[keys.instances, keys.input, taken, keys.beats],
            args=[instance, "1" if own else "0"],
        )
        return moved

    def leave(self, keys: WatcherKeys, instance: str) -> int:
        """Hand ``instance``'s taken list back and remove it from the live instances.

        One script, so an instance never leaves while its taken list holds events.
        Returns the number of events handed back.
        """
        moved: int = self._leave(
            keys=[keys.instances, keys.input, keys.taken, keys.beats], args=[instance]
        )
        return moved

    def commit(
        self, keys: WatcherKeys, batch: Batch, *, channel: str | None, max_attempts: int
    ) -> CommitResult:
        """Run the commit script; raise :class:`OwnershipLost` when the batch is no longer ours.

        Retrying after a lost reply is safe: a batch already committed is recognised by
        its id and its first result returned, nothing is written twice.
        """
        script_keys, args = _commit_arguments(keys, batch, channel, max_attempts)
        return commit_result(keys, batch, script_keys, self._commit(keys=script_keys, args=args))

    def send_commit(
        self, keys: WatcherKeys, batch: Batch, *, channel: str | None, max_attempts: int
    ) -> PendingCommit:
        """Send the commit script without waiting; :meth:`PendingCommit.result` waits.

        Redis runs the script while the caller goes on (computing the next batch) in the
        same thread: no second thread waits for the GIL to read the reply.
        """
        script_keys, args = _commit_arguments(keys, batch, channel, max_attempts)
        return PendingCommit(Pending(self._commit, script_keys, args), keys, batch)

    def send_take(self, keys: WatcherKeys, limit: int) -> Pending:
        """Send a :meth:`take` without waiting; ``reply()`` gives the events."""
        return Pending(self._take, [keys.input, keys.taken], [limit])


class Pending:
    """A script sent on a connection of its own, its reply not read yet.

    Read it with :meth:`reply` or drop it with :meth:`discard` (the connection is
    closed: the reply, if any, is lost; the script may or may not have run).
    """

    def __init__(self, script: Any, keys: list[str], args: list[Any]) -> None:
        self.script, self.keys, self.args = script, keys, args
        self.pool = script.registered_client.connection_pool
        self.connection = self.pool.get_connection()
        try:
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
            self.connection.send_command(*command)
        except BaseException:
            self.discard()
            raise

    def reply(self) -> Any:
        """Wait for the reply (a script Redis no longer knows is loaded and run)."""
        try:
            reply = self.connection.read_response()  # disconnects on a connection error
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            reply = None
        finally:
            self.pool.release(self.connection)
        if reply is None:  # it did not run: run it now
            reply = self.script(keys=self.keys, args=self.args)
        return reply

    def discard(self) -> None:
        """Close the connection without reading the reply."""
        self.connection.disconnect()
        self.pool.release(self.connection)


@dataclass(frozen=True, slots=True)
class PendingCommit:
    """A commit script sent, its reply not read yet."""

    pending: Pending
    keys: WatcherKeys
    batch: Batch

    def result(self) -> CommitResult:
        """Wait for the reply; the errors are :meth:`Store.commit`'s."""
        reply = self.pending.reply()  # a repeat after NOSCRIPT is recognised by the script
        return commit_result(self.keys, self.batch, self.pending.keys, reply)


def commit_result(
    keys: WatcherKeys, batch: Batch, script_keys: list[str], reply: list[Any]
) -> CommitResult:
    """The commit script's reply as a result, or the error it stands for."""
    if reply[0] == STATUS_WRONG_TYPE:
        raise wrong_type(reply, script_keys, batch)
    status, queued, dedup, retried, dead = reply
    if status == STATUS_NOT_OWNED:
        raise OwnershipLost(
            f"{keys.taken} no longer holds exactly this batch (another instance "
            "reclaimed it, or a take whose answer was lost added events)"
        )
    return CommitResult(queued, dedup, retried, dead, status == STATUS_ALREADY_COMMITTED)


def wrong_type(reply: list[Any], script_keys: list[str], batch: Batch) -> WrongType:
    """The error for a commit refused because a key holds another Redis type."""
    index = int(reply[1]) - 1  # Lua counts from 1
    found, needed = (v.decode() if isinstance(v, bytes) else str(v) for v in reply[2:4])
    name = script_keys[index]
    role = _KEY_ROLES.get(index) or next(
        f"{what} of rule {t.rule!r}"
        for t in batch.tasks
        for what, key in (
            ("dedup set", t.set_key),
            ("target queue", t.queue_key),
            ("messages hash", t.messages_key),
        )
        if key == name
    )
    return WrongType(
        f"key {name!r} holds a {found}, but the router writes a {needed} "
        f"there ({role}); nothing was written"
    )


def dead_letter_entry(failed: FailedEvent, *, watcher: str, attempts: int, at_s: int) -> bytes:
    """The JSON kept in the dead-letter list for an event that failed for good."""
    entry: dict[str, Any] = {
        "event": failed.event.decode("utf-8", "replace"),
        "rule": failed.rule,
        "error": failed.error,
        "attempts": attempts,
        "watcher": watcher,
        "at": at_s,
    }
    try:
        failed.event.decode("utf-8")
    except UnicodeDecodeError:
        entry["event_hex"] = failed.event.hex()
    return json.dumps(entry).encode()


#: What the fixed keys of commit.lua are, for error messages (index from 0).
_KEY_ROLES = {
    0: "taken list",
    1: "stats hash",
    2: "input list",
    3: "attempts hash",
    4: "dead-letter list",
    5: "unmatched list",
    6: "commit marker",
}


def _commit_arguments(
    keys: WatcherKeys, batch: Batch, channel: str | None, max_attempts: int
) -> tuple[list[str], list[Any]]:
    events = batch.events
    script_keys: list[str] = [
        keys.taken,
        keys.stats,
        keys.input,
        keys.attempts,
        keys.dead,
        keys.unmatched or keys.stats,
        keys.committed,
    ]
    args: list[Any] = [
        len(events),
        events[-1],
        events[0],
        int(batch.taken_at),
        channel or "",
        keys.taken_base,
        len(batch.tasks),
        len(batch.failed),
        len(batch.unmatched),
        max_attempts,
        "1" if keys.unmatched else "0",
        len(batch.counters),
        batch.batch_id,
        COMMIT_MARKER_TTL_MS,
    ]
    index: dict[str, int] = {}

    def key(name: str | None) -> int:
        """The KEYS index (from 1) of ``name``, each key passed once; 0 for none."""
        if name is None:
            return 0
        found = index.get(name)
        if found is None:
            script_keys.append(name)
            found = index[name] = len(script_keys)
        return found

    planned = [
        (
            "r" if t.messages_key is None else "d",
            key(t.set_key),
            key(t.queue_key),
            key(t.messages_key),
            t.task,
            t.payload,
            t.redis_message_id,
            t.event_index,
            t.rule,
        )
        for t in batch.tasks
    ]
    args.append(msgpack.packb(planned, use_bin_type=False) if planned else b"")
    for f in batch.failed:
        entry = dead_letter_entry(
            f, watcher=keys.input, attempts=max_attempts, at_s=int(batch.taken_at)
        )
        args += (f.event, entry, f.rule)
    args += batch.unmatched
    for name, count in batch.counters.items():
        args += (name, count)
    return script_keys, args

"""The commit codec: a planned batch into a ``commit.lua`` call, its reply back.

One codec for both callers: the router commits the batches it took (mode ``taken``),
a worker commits the one done event of a finished message (mode ``message``, keyed by
the message id). :meth:`CommitCodec.encode` gives an :class:`EncodedCommit`: the call
(its keys by role and one :class:`~.contract.CommitHeader`, the fields named in
:mod:`.contract`), and :meth:`~EncodedCommit.result`, which reads the script's reply
into a :class:`CommitResult` or raises the typed error it stands for.

Over ~250 lines on purpose: encoding a commit and reading its reply are one codec.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import OwnershipLost, WrongType
from ..rules.batch import Batch, FailedEvent, PlannedTask
from ..rules.lineage import DoneCause
from .contract import COMMIT_KEYS, CommitHeader, Status
from .joins import JoinKeys, encode_hits
from .keys import HISTORY_TTL_S, DramatiqKeys, WatcherKeys, message_markers
from .keyspace import text
from .lineage import LineageBucket
from .outbox import Entry, parts_of
from .scripts import refusal, script
from .tasks import KeyList, split, task_rows
from .wire import Call

#: How long a marker is kept: longer than any outage a commit is retried across, and
#: than a message's redelivery after its worker died.
MARKER_TTL_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a commit did."""

    queued: int
    deduplicated: int
    retried: int
    dead: int
    #: True when this commit had been made already (a retry after a lost reply).
    repeated: bool = False
    #: The per-rule counters the script left to the caller (a commit encoded with
    #: ``per_rule_later``, made now): ``'<rule>|queued'`` -> count, ...
    per_rule: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DoneMessage:
    """A finished Dramatiq message's done event, as a worker routes it inline: one
    record from the worker's outcome to the commit (mode ``message``)."""

    message_id: str
    event: str  # the done event: the message's task string
    done_queue: str  # the done list a watcher reads
    release_set: str | None  # the dedup set the event leaves now (release "done"), if any
    #: the event with its payload, an envelope (rules/data.py); None: a plain event
    envelope: bytes | None = None
    #: the finished message's cause, for the tasks its event makes (routed inline)
    cause: DoneCause | None = None
    #: the envelope's payload, when the worker made the envelope (not parsed again)
    payload: dict[str, Any] | None = None

    @property
    def element(self) -> bytes:
        """What goes onto the done list: the envelope, or the event itself."""
        return self.envelope if self.envelope is not None else self.event.encode()

    @property
    def markers(self) -> str:
        """The done list's markers: the ids of the messages committed inline."""
        return message_markers(self.done_queue)


@dataclass(frozen=True, slots=True)
class CommitSettings:
    """What every commit of one watcher shares."""

    keys: WatcherKeys
    dramatiq: DramatiqKeys
    channel: str | None
    max_attempts: int
    marker_ttl_ms: int = MARKER_TTL_MS
    history_ttl_s: int = HISTORY_TTL_S
    #: On a Redis Cluster, the hash slot of the watcher's keys: tasks in other slots go
    #: to the outbox (see :mod:`.outbox`). None on a single server.
    home_slot: int | None = None
    #: lineage records: how long each is kept (ms; 0: none kept) and how many at most
    lineage_ttl_ms: int = 0
    lineage_max: int = 0


@dataclass(frozen=True, slots=True)
class EncodedCommit:
    """A batch as a ``commit.lua`` call, and the reading of its reply."""

    call: Call
    batch: Batch
    settings: CommitSettings
    #: the KEYS index of each role of this commit (see contract.COMMIT_KEYS); the
    #: tasks' keys follow them
    roles: dict[str, int]
    per_rule_later: bool = False
    #: The tasks this script writes (on a cluster, those of the watcher's slot).
    tasks: Sequence[PlannedTask] = ()
    #: The tasks in other slots (on a cluster), written after the commit.
    outbox: Entry | None = None

    def result(self, reply: list[Any]) -> CommitResult:
        """The script's reply as a result; raise what a refusal stands for."""
        refused = refusal(reply, self.call.keys)
        if refused is not None:
            raise self.wrong_type(int(reply[1]), refused)
        status, queued, dedup, retried, dead, *pairs = reply
        if status == Status.NOT_OWNED:
            raise OwnershipLost(
                f"{self.settings.keys.taken} no longer holds exactly this batch (another "
                "instance reclaimed it, or a take whose answer was lost added events)"
            )
        per_rule = self._per_rule(pairs) if self.per_rule_later and pairs else {}
        return CommitResult(queued, dedup, retried, dead, status == Status.BEFORE, per_rule)

    def _per_rule(self, reply: list[Any]) -> dict[str, int]:
        """The per-rule counters of a commit that left them to us: the script returned
        the positions of the deduplicated tasks; each task's rule is the batch's."""
        tasks, n = self.tasks, int(reply[0])
        queued = Counter(t.rule for t in tasks)
        deduplicated = Counter(tasks[int(p) - 1].rule for p in reply[1 : 1 + n])
        counts = {f"{rule}|queued": c - deduplicated[rule] for rule, c in queued.items()}
        counts.update((f"{rule}|deduplicated", c) for rule, c in deduplicated.items())
        rest = reply[1 + n :]
        counts.update((text(rest[i]), int(rest[i + 1])) for i in range(0, len(rest), 2))
        return {name: c for name, c in counts.items() if c}

    def wrong_type(self, index: int, refused: tuple[str, str, str]) -> WrongType:
        """The error for a commit refused because KEYS[``index``] holds another type."""
        name, found, needed = refused
        roles = {i: COMMIT_KEYS[role] for role, i in self.roles.items()}
        role = roles.get(index) or self._task_role(name)
        return WrongType(
            f"key {name!r} holds a {found}, but the router writes a {needed} "
            f"there ({role}); nothing was written"
        )

    def _task_role(self, name: str) -> str:
        dramatiq = self.settings.dramatiq
        for t in self.tasks:
            queue = t.message.queue_name if t.message is not None else t.queue
            if name == t.set:
                return f"dedup set of rule {t.rule!r}"
            if name == (dramatiq.queue(queue) if t.message is not None else queue):
                return f"target queue of rule {t.rule!r}"
            if t.message is not None and name == dramatiq.messages(queue):
                return f"messages hash of rule {t.rule!r}"
        return "a task's key"


class CommitCodec:
    """Encodes the batches of one watcher for ``commit.lua``."""

    def __init__(self, settings: CommitSettings) -> None:
        self.settings = settings

    def encode(
        self, batch: Batch, done: DoneMessage | None = None, *, per_rule_later: bool = False
    ) -> EncodedCommit:
        """The call of ``batch``'s commit (``done``: a worker's inline commit of a
        message's done event).

        ``per_rule_later``: the per-rule counters are neither sent (``batch.counters``) nor
        written by the script, which returns its own in the reply; the caller writes
        them later (see :mod:`.rule_counts`).
        """
        s, events = self.settings, batch.events
        k = s.keys
        if done is not None and len(events) != 1:
            raise ValueError("an inline commit is of one event")
        keys = KeyList()
        roles = {
            "stats": keys.add(k.stats),
            "history": keys.add(k.history_at(int(batch.taken_at) // 60)),
            "attempts": keys.add(k.attempts),
            "marker": keys.add(k.committed if done is None else done.markers),
        }
        if done is None:
            roles["taken"] = keys.add(k.taken)
        elif done.release_set is not None:
            roles["release"] = keys.add(done.release_set)
        if batch.failed:
            roles["input"] = keys.add(k.input)
            roles["dead"] = keys.add(k.dead)
        if batch.unmatched and k.unmatched:
            roles["unmatched"] = keys.add(k.unmatched)
        commit_id = batch.batch_id if done is None else done.message_id
        tasks, outbox = self._split(batch, commit_id)
        if outbox is not None:
            roles["outbox"] = keys.add(k.outbox)
            roles["outbox_at"] = keys.add(k.outbox_at)
        records: list[bytes | str] | None = [] if s.lineage_ttl_ms else None
        rows = task_rows(
            tasks, keys, s.dramatiq, _event_index, with_rules=not per_rule_later, records=records
        )
        joins: list[Any] = []
        lineage_expiry_ms = lineage_max = 0
        if s.lineage_ttl_ms:
            now_ms = int(batch.taken_at * 1000)
            bucket = LineageBucket.at(k, s.lineage_ttl_ms, s.lineage_max, now_ms)
            roles["lineage"] = keys.add(bucket.key)
            lineage_expiry_ms, lineage_max = bucket.expiry_ms, bucket.most
        if batch.joins:
            jk = JoinKeys.of(k.input)
            roles["join_open"] = keys.add(jk.open)
            roles["join_due"] = keys.add(jk.due)
            roles["join_counts"] = keys.add(jk.counts)
            joins = encode_hits(batch.joins, keys, jk, s.dramatiq, records)
        at = int(batch.taken_at)
        header = CommitHeader(
            mode="taken" if done is None else "message",
            id=commit_id,
            keys=roles,
            n=len(events),
            newest=events[-1],
            oldest=events[0],
            score=at,
            channel=s.channel or None,
            prefix=k.taken_base,
            max_attempts=s.max_attempts,
            marker_ttl_ms=s.marker_ttl_ms,
            history_ttl_s=s.history_ttl_s,
            tasks=rows,
            failed=[(f.event, self._dead_letter(f, at), f.rule) for f in batch.failed],
            unmatched=batch.unmatched,
            counters=[] if per_rule_later else [x for pair in batch.counters.items() for x in pair],
            later=per_rule_later,
            release=done.event if done is not None and done.release_set is not None else None,
            outbox=outbox.pack() if outbox is not None else None,
            joins=joins,
            lineage_ttl_ms=lineage_expiry_ms,
            lineage_max=lineage_max,
            records=records or [],
        )
        call = Call(script("commit"), keys.names, [header.pack()])
        return EncodedCommit(call, batch, s, roles, per_rule_later, tasks, outbox)

    def _dead_letter(self, failed: FailedEvent, at_s: int) -> bytes:
        s = self.settings
        return dead_letter_entry(failed, watcher=s.keys.input, attempts=s.max_attempts, at_s=at_s)

    def _split(self, batch: Batch, entry_id: str) -> tuple[Sequence[PlannedTask], Entry | None]:
        """The tasks of this commit, and the outbox entry ``entry_id`` of the others (on
        a cluster): the batch id, or the message id of an inline commit."""
        s = self.settings
        if s.home_slot is None or not batch.tasks:
            return batch.tasks, None
        home, away = split(batch.tasks, s.home_slot, s.dramatiq)
        if not away:
            return batch.tasks, None
        parts = parts_of(away, batch.events, s.dramatiq, with_events=bool(s.channel))
        entry = Entry(entry_id, int(batch.taken_at), s.channel or "", s.keys.taken_base, parts)
        return home, entry


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


def _event_index(task: PlannedTask) -> int:
    """What commit.lua gets as a task's event: its index in the batch (0: oldest)."""
    return task.event_index

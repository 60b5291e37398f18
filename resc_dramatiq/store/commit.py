"""The commit codec: a planned batch into ``commit.lua``'s KEYS and ARGV, its reply back.

One codec for both callers: the router commits the batches it took (mode ``taken``),
a worker commits the one done event of a finished message (mode ``message``, keyed by
the message id). :meth:`CommitCodec.encode` gives an :class:`EncodedCommit`, whose
:meth:`~EncodedCommit.result` reads the script's reply into a :class:`CommitResult` or
raises the typed error it stands for. The argument layout is ``commit.lua``'s header.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import OwnershipLost, WrongType
from ..rules.plan import Batch, FailedEvent, PlannedTask
from .keys import HISTORY_TTL_S, DramatiqKeys, WatcherKeys, message_markers
from .keyspace import text
from .outbox import Entry, pack_tasks, parts_of, split
from .scripts import refusal

STATUS_COMMITTED = 1
STATUS_ALREADY_COMMITTED = 2
STATUS_NOT_OWNED = -1

#: How long a marker is kept: longer than any outage a commit is retried across, and
#: than a message's redelivery after its worker died.
MARKER_TTL_MS = 24 * 3600 * 1000

#: The fixed KEYS of commit.lua, in order, by their role (for error messages).
FIXED_KEYS = (
    "taken list",
    "stats hash",
    "input list",
    "attempts hash",
    "dead-letter list",
    "unmatched list",
    "commit marker",
    "dedup set released",
    "history hash",
    "outbox",
    "outbox times",
)


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


@dataclass(frozen=True, slots=True)
class EncodedCommit:
    """A batch as ``commit.lua``'s arguments, and the reading of its reply."""

    keys: list[str]
    args: list[Any]
    batch: Batch
    settings: CommitSettings
    per_rule_later: bool = False
    #: The tasks this script writes (on a cluster, those of the watcher's slot).
    tasks: Sequence[PlannedTask] = ()
    #: The tasks in other slots (on a cluster), written after the commit.
    outbox: Entry | None = None

    def result(self, reply: list[Any]) -> CommitResult:
        """The script's reply as a result; raise what a refusal stands for."""
        refused = refusal(reply, self.keys)
        if refused is not None:
            raise self.wrong_type(int(reply[1]) - 1, refused)  # Lua counts from 1
        status, queued, dedup, retried, dead, *pairs = reply
        if status == STATUS_NOT_OWNED:
            raise OwnershipLost(
                f"{self.settings.keys.taken} no longer holds exactly this batch (another "
                "instance reclaimed it, or a take whose answer was lost added events)"
            )
        per_rule = self._per_rule(pairs) if self.per_rule_later and pairs else {}
        return CommitResult(
            queued, dedup, retried, dead, status == STATUS_ALREADY_COMMITTED, per_rule
        )

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
        """The error for a commit refused because KEYS[``index`` + 1] holds another type
        (its position, not its name, gives its role: a placeholder repeats a name)."""
        name, found, needed = refused
        role = FIXED_KEYS[index] if index < len(FIXED_KEYS) else self._task_role(name)
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
        self, batch: Batch, by_message: DoneMessage | None = None, *, per_rule_later: bool = False
    ) -> EncodedCommit:
        """The arguments of ``batch``'s commit (``by_message``: a worker's inline commit).

        ``per_rule_later``: the per-rule counters are neither sent (``batch.counters``) nor
        written by the script, which returns its own in the reply; the caller writes
        them later (see ``router.rule_counts``).
        """
        s, events = self.settings, batch.events
        k = s.keys
        if by_message is not None and len(events) != 1:
            raise ValueError("an inline commit is of one event")
        marker = by_message.markers if by_message is not None else k.committed
        released = by_message.release_set if by_message is not None else None
        script_keys: list[str] = [
            k.taken if by_message is None else marker,
            k.stats,
            k.input,
            k.attempts,
            k.dead,
            k.unmatched or k.stats,  # a placeholder when unmatched events are not kept
            marker,
            released or k.stats,  # a placeholder when nothing is released
            k.history_at(int(batch.taken_at) // 60),
            k.outbox,
            k.outbox_at,
        ]
        tasks, outbox = self._split(
            batch, batch.batch_id if by_message is None else by_message.message_id
        )
        args: list[Any] = [
            len(events),
            events[-1],
            events[0],
            int(batch.taken_at),
            s.channel or "",
            k.taken_base,
            len(tasks),
            len(batch.failed),
            len(batch.unmatched),
            s.max_attempts,
            "1" if k.unmatched else "0",
            0 if per_rule_later else len(batch.counters),
            batch.batch_id if by_message is None else by_message.message_id,
            s.marker_ttl_ms,
            "taken" if by_message is None else "message",
            "1" if released else "0",
            pack_tasks(tasks, script_keys, s.dramatiq, _event_index, with_rules=not per_rule_later),
            "1" if per_rule_later else "0",
            s.history_ttl_s,
            outbox.pack() if outbox is not None else b"",
        ]
        for f in batch.failed:
            entry = dead_letter_entry(
                f, watcher=k.input, attempts=s.max_attempts, at_s=int(batch.taken_at)
            )
            args += (f.event, entry, f.rule)
        args += batch.unmatched
        if not per_rule_later:
            for name, count in batch.counters.items():
                args += (name, count)
        return EncodedCommit(script_keys, args, batch, s, per_rule_later, tasks, outbox)

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

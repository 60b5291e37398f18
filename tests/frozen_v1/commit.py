"""Layout 1's commit, as ``commit.lua`` (mode ``taken``) took it: KEYS and ARGV.

Trimmed from ``store/commit.py`` (``CommitCodec.encode``) and ``store/outbox.py``
(``pack_tasks``) at ``af3efcb``: one server (no outbox), per-rule counters written by
the script, unmatched events counted and not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

#: How long a commit marker was kept (``MARKER_TTL_MS``).
MARKER_TTL_MS = 24 * 3600 * 1000
#: How long a minute of history was kept (``HISTORY_TTL_S``).
HISTORY_TTL_S = 3 * 3600


@dataclass(frozen=True, slots=True)
class Keys:
    """A watcher's keys for one instance, named as layout 1 names them."""

    input: str
    taken_base: str
    dead: str
    instance: str

    @property
    def taken(self) -> str:
        return f"{self.taken_base}/{self.instance}"

    @property
    def committed(self) -> str:
        return f"{self.input}/committed/{self.instance}"

    @property
    def instances(self) -> str:
        return f"{self.taken_base}/instances"

    @property
    def beats(self) -> str:
        return f"{self.taken_base}/beats"

    def history_at(self, minute: int) -> str:
        return f"{self.input}/history/{minute}"


@dataclass(frozen=True, slots=True)
class Task:
    """A planned task: a raw push (``message_id`` empty) or a Dramatiq message."""

    task: bytes
    queue: str  # the raw list, or the Dramatiq queue name
    set: str | None
    event_index: int  # its event in the batch (0: oldest)
    rule: str
    redis_message_id: str = ""
    payload: bytes = b""


@dataclass(slots=True)
class Batch:
    """What one commit writes."""

    events: Sequence[bytes]
    taken_at: float
    batch_id: str
    tasks: list[Task] = field(default_factory=list)
    unmatched: list[bytes] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


def encode(
    batch: Batch, keys: Keys, *, namespace: str, max_attempts: int = 3
) -> tuple[list[str], list[Any]]:
    """``batch`` as ``commit.lua``'s KEYS and ARGV."""
    events = batch.events
    stats = f"{keys.input}/stats"
    script_keys: list[str] = [
        keys.taken,
        stats,
        keys.input,
        f"{keys.input}/attempts",
        keys.dead,
        stats,  # unmatched list: not kept, a placeholder
        keys.committed,
        stats,  # nothing released: a placeholder
        keys.history_at(int(batch.taken_at) // 60),
        f"{keys.input}/outbox",
        f"{keys.input}/outbox/at",
    ]
    args: list[Any] = [
        len(events),
        events[-1],
        events[0],
        int(batch.taken_at),
        "",  # no listener channel
        keys.taken_base,
        len(batch.tasks),
        0,  # failed events
        len(batch.unmatched),
        max_attempts,
        "0",
        len(batch.counters),
        batch.batch_id,
        MARKER_TTL_MS,
        "taken",
        "0",
        pack_tasks(batch.tasks, script_keys, namespace),
        "0",
        HISTORY_TTL_S,
        b"",  # no outbox entry
    ]
    args += batch.unmatched
    for name, count in batch.counters.items():
        args += (name, count)
    return script_keys, args


def pack_tasks(tasks: Sequence[Task], script_keys: list[str], namespace: str) -> bytes:
    """The MessagePack array of the tasks; their keys appended to ``script_keys``."""
    index = {name: i for i, name in enumerate(script_keys, 1)}

    def key(name: str) -> int:
        found = index.get(name)
        if found is None:
            script_keys.append(name)
            found = index[name] = len(script_keys)
        return found

    planned: list[tuple[Any, ...]] = []
    for t in tasks:
        dedup = key(t.set) if t.set is not None else 0
        if not t.redis_message_id:
            planned.append(("r", dedup, key(t.queue), 0, t.task, b"", "", t.event_index, t.rule))
            continue
        queue, messages = key(f"{namespace}:{t.queue}"), key(f"{namespace}:{t.queue}.msgs")
        planned.append(
            ("d", dedup, queue, messages, t.task, t.payload, t.redis_message_id, t.event_index,
             t.rule)
        )  # fmt: skip
    return msgpack.packb(planned, use_bin_type=False) if planned else b""

"""Planned tasks as the scripts read them, and their split by hash slot on a cluster.

A script names its keys by index in ``KEYS``: :class:`KeyList` gives each name its
index (once), and :func:`task_rows` turns planned tasks into rows of
:data:`~.contract.TASK_FIELDS`, their keys added to the list. ``commit.lua`` gets the
rows of the watcher's slot; on a Redis Cluster the others are split by slot
(:func:`split`) into the parts an outbox entry keeps (see :mod:`.outbox`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..rules.batch import PlannedTask
from ..rules.lineage import MESSAGE_IS_RECORD
from .keys import DramatiqKeys
from .slots import key_slot

#: commit.lua's ``h.records`` as it is built (None: no lineage records kept).
Records = list[bytes | str] | None


class KeyList:
    """The ``KEYS`` of one script call, each name once, by index (from 1; from
    ``after + 1`` when the script puts ``after`` keys of its own in front of them)."""

    def __init__(self, names: Iterable[str] = (), *, after: int = 0) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.after = after
        for name in names:
            self.add(name)

    def add(self, name: str) -> int:
        """The index of ``name``, added if new."""
        found = self.index.get(name)
        if found is None:
            self.names.append(name)
            found = self.index[name] = len(self.names) + self.after
        return found


def task_rows(
    tasks: Sequence[PlannedTask],
    keys: KeyList,
    dramatiq: DramatiqKeys,
    event: Callable[[PlannedTask], Any],
    *,
    with_rules: bool = True,
    records: Records = None,
) -> list[tuple[Any, ...]]:
    """``tasks`` as the scripts' rows; their keys are added to ``keys``. ``event(task)`` is
    what the script gets as the task's event (its index in the batch, or its text).
    ``records`` (commit.lua's ``h.records``) gets each task's lineage record, as field,
    value pairs (``t:<task>``, and for a message ``m:<id>`` the record, empty when it is
    the message itself, and ``t:<task>`` a pointer to it), its row the position of its
    first (0: none)."""
    # per task, the indexes are looked up without a call: they start at 1, so
    # ``index.get(name) or keys.add(name)`` calls add() only for a key not seen yet
    index, add_key = keys.index, keys.add
    queues: dict[str, tuple[int, int]] = {}  # Dramatiq queue -> indexes of list, hash
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    for t in tasks:
        dedup = (index.get(t.set) or add_key(t.set)) if t.set is not None else 0
        rule = t.rule if with_rules else ""
        m = t.message
        if m is None:
            queue = index.get(t.queue) or add_key(t.queue)
            kept = _kept(t, "", records) if t.lineage and records is not None else 0
            add(("r", dedup, queue, 0, t.task, b"", "", event(t), rule, kept))
            continue
        found = queues.get(m.queue_name)
        if found is None:
            found = queues[m.queue_name] = (
                add_key(dramatiq.queue(m.queue_name)),
                add_key(dramatiq.messages(m.queue_name)),
            )
        row = ("d", dedup, found[0], found[1], t.task, m.payload, m.redis_message_id, event(t))
        kept = _kept(t, m.message_id, records) if t.lineage and records is not None else 0
        add((*row, rule, kept))
    return rows


def _kept(task: PlannedTask, message_id: str, records: list[bytes | str]) -> int:
    """Add ``task``'s lineage record to ``records`` (see :func:`task_rows`); its position."""
    return add_record(records, task.task, message_id, task.lineage)


def add_record(records: list[bytes | str], task: bytes, message_id: str, record: bytes) -> int:
    """Add the lineage record of ``task`` (``message_id``: its Dramatiq message's, "" a raw
    task) to ``records`` as the scripts read them (see :func:`task_rows`); its position."""
    at = len(records) + 1
    name = b"t:" + task
    if message_id:
        kept = b"" if record == MESSAGE_IS_RECORD else record  # b"": the message itself
        records += (name, f'{{"see":"{message_id}"}}', f"m:{message_id}", kept)
    else:
        records += (name, record)
    return at


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

"""What a plan is made of: the tasks, the join hits and the failed events of a batch.

:class:`Batch` is everything one commit writes; :mod:`.plan` makes it, the store
commits it, ``explain`` and the tests read it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from .messages import Envelope


@dataclass(slots=True)  # not frozen: made per task, and a frozen init costs
class PlannedTask:
    """A task ready to be committed: a raw list push, or a Dramatiq ``message``."""

    task: bytes
    queue: str
    set: str | None
    event_index: int  # index of its event in the batch (0: oldest)
    rule: str
    message: Envelope | None = None
    lineage: bytes = b""  # its lineage record (rules/lineage.py), b"": none kept


@dataclass(slots=True)
class JoinHit:
    """What one event does to a join's group, as the commit applies it atomically:

    * ``member``: records ``member`` in ``group`` (with the group's expectation when it
      is not known yet: ``expect`` members, ``members`` when listed); ``tasks`` are
      queued when this event completes the group;
    * ``fail``: closes the open group as failed; ``tasks`` are queued if it was open;
    * ``record``: a fan-out's tasks, ``members``, are the group's expected members.
    """

    kind: str
    event_index: int
    rule: str
    group: str
    member: str = ""
    expect: int = 0
    members: tuple[str, ...] = ()
    deadline_ms: int = 0  # after the first member; 0: none
    ttl_ms: int = 0  # a closed group's tombstone
    tasks: list[PlannedTask] = field(default_factory=list)
    data: str = ""  # the member's payload, JSON, kept when the join's make wants it
    #: the text in the tasks' messages that the members' payloads replace ('': none)
    token: str = ""
    #: the member's message id (its event's cause), '' none
    parent: str = ""
    #: the JSON string in the tasks' causes the members' message ids replace ('': none)
    ids: str = ""
    #: the member's trace (its event's cause's traceparent), '' none
    trace: str = ""


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """An event whose tasks could not be made, with the rule and the reason."""

    event: bytes
    rule: str
    error: str


@dataclass(slots=True)
class Batch:
    """Everything one commit writes; ``batch_id`` tells a retried commit from a new one."""

    events: Sequence[bytes]
    taken_at: float  # time.time() when the events were taken
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tasks: list[PlannedTask] = field(default_factory=list)
    failed: list[FailedEvent] = field(default_factory=list)
    unmatched: list[bytes] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # '<rule>|matched' -> count
    joins: list[JoinHit] = field(default_factory=list)  # in event order
    #: the traceparents the matched events' causes carry (the commit span's links)
    traces: list[str] = field(default_factory=list)

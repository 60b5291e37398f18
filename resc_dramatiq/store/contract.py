"""What Python and Lua agree on, stated once: statuses, a task's fields, a commit's fields.

The script loader (:mod:`.scripts`) writes :func:`lua_constants` in front of every
script, so Lua reads the same numbers and names Python declares here. A commit is sent
as one MessagePack map (:class:`CommitHeader`'s fields, by name) and its keys by role
(:data:`COMMIT_KEYS`): ``commit.lua`` reads ``h.<field>`` and ``KEYS[h.keys.<role>]``.
``tests/test_contract.py`` checks that the script reads no field and no role that is
not declared here, and every one that is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

import msgpack

from ..rules.lineage import MEMBERS_LIMIT


class Status(IntEnum):
    """The first value of a script's reply."""

    #: commit.lua: made now; apply.lua: applied now; emit.lua: written now
    DONE = 1
    #: made before (a retry after a lost reply, a redelivered message): nothing written now
    BEFORE = 2
    #: commit.lua: the taken list no longer holds this batch (another instance reclaimed it)
    NOT_OWNED = -1
    #: a key the script would write holds another type; ``{-2, key index, found, needed}``
    WRONG_TYPE = -2
    #: expire.lua: the group is open, but its deadline has not come
    NOT_DUE = -3


#: The fields of a planned task, as the scripts read it (``t[T_KIND]`` ...): kind ('r'
#: raw, 'd' Dramatiq), KEYS index of its dedup set (0: none), of its target list, of its
#: messages hash (0: raw), task, payload ('' raw), Redis message id ('' raw), its event
#: (commit.lua: its index in the batch, 0 the oldest; apply.lua: its text, '' without a
#: listener channel), rule ('' when the commit leaves per-rule counters to the caller),
#: its lineage record's position in commit.lua's ``h.records`` (0: none; see
#: rules/lineage.py).
TASK_FIELDS = (
    "kind", "set", "queue", "messages", "task", "payload", "message_id", "event", "rule", "lineage",
)  # fmt: skip

#: The fields of a join hit (``h.joins``, an array each: ``hit[H_KIND]`` ...): kind
#: ('member', 'fail', 'record'), KEYS index of its group's hash, its rule, member,
#: expected count (0: not from this event), its event's index in the batch (0: the
#: oldest), tasks queued when it completes or fails the group (TASK_FIELDS each), the
#: tombstone's ttl (ms); then those that are most often empty, left out from the first
#: of a run of empty ones to the end (read as ``hit[H_DATA] or ''``; :data:`HIT_EMPTY`):
#: deadline (ms after the first member; 0: none), expected members, the member's
#: payload (JSON, '' none), the text of its tasks' messages that the members' payloads
#: replace ('': none), the member's message id (its event's cause; '' none), the JSON
#: string in its tasks' causes that the members' message ids replace ('' none; see
#: rules/lineage.py; ``resc-ids-<x>``: the members' traces replace ``resc-traces-<x>``),
#: and the member's trace (its event's cause's; '' none).
JOIN_HIT_FIELDS = (
    "kind", "group", "rule", "member", "expect", "event", "tasks", "ttl",
    "deadline", "members", "data", "token", "parent", "ids", "trace",
)  # fmt: skip

#: The join hit fields a hit may leave out at its end (from the first of them).
HIT_EMPTY = JOIN_HIT_FIELDS.index("deadline")

#: Values per variadic write (``unpack()`` is bounded by Lua's stack); even, so that a
#: chunk of an HSET's values holds whole field-value pairs.
PUSH_CHUNK = 4000

#: A group a fan-out created, that no member joined, is forgotten after this long (ms).
FAN_OUT_TTL_MS = 7 * 24 * 3600 * 1000

#: Most bytes of its members' payloads a join group keeps (a member's payload that would
#: pass it is not kept: its make receives null for that member).
JOIN_DATA_LIMIT = 64 * 1024

#: Most expired markers a script forgets per call.
FORGET_CHUNK = 100

#: apply.lua forgets the old markers of one part in this many (a call may hold hundreds
#: of parts, a slot each): each forgetting may remove FORGET_CHUNK, twice what is added
#: meanwhile.
FORGET_EVERY = 50

#: The keys a commit may name, by role (the Lua name) -> what it is (for error messages).
#: Only the roles a commit needs are sent; the tasks' keys follow them in ``KEYS``.
COMMIT_KEYS = {
    "taken": "taken list",
    "stats": "stats hash",
    "input": "input list",
    "attempts": "attempts hash",
    "dead": "dead-letter list",
    "unmatched": "unmatched list",
    "marker": "commit marker",
    "release": "dedup set released",
    "history": "history hash",
    "outbox": "outbox",
    "outbox_at": "outbox times",
    "join_open": "open join groups",
    "join_due": "join deadlines",
    "join_counts": "open join groups per rule",
    "lineage": "lineage records",
}


@dataclass(frozen=True, slots=True)
class CommitHeader:
    """One commit of one watcher, as ``commit.lua`` reads it (``h.<field>``)."""

    #: 'taken' (the router: the batch is the n oldest events of the taken list) or
    #: 'message' (a worker: one done event, committed once per Dramatiq message)
    mode: str
    #: the commit's id: the batch id, or the Dramatiq message id
    id: str
    #: KEYS index of each role of :data:`COMMIT_KEYS` this commit needs
    keys: dict[str, int]
    #: events in the batch, the newest and the oldest (mode 'message': the event)
    n: int
    newest: bytes
    oldest: bytes
    #: the dedup score: when the batch was taken, whole unix seconds
    score: int
    #: listener channel (None: none) and the prefix of its lines (the taken queue's name)
    channel: str | None
    prefix: str
    #: failed attempts before an event is dead-lettered
    max_attempts: int
    #: how long a marker is kept (ms), and the minute's history hash (s)
    marker_ttl_ms: int
    history_ttl_s: int
    #: the planned tasks (:data:`TASK_FIELDS` each), those of the watcher's slot
    tasks: list[Any]
    #: per failed event: [event, dead-letter entry (JSON), rule]
    failed: list[Any]
    #: events no rule matched (counted; pushed to the unmatched list when kept)
    unmatched: list[bytes]
    #: [stats field, increment, ...] ('<rule>|matched' ...); empty with ``later``
    counters: list[Any]
    #: the per-rule counters are left to the caller: the reply carries them
    later: bool
    #: mode 'message': the member released from KEYS[keys.release] (the event's text:
    #: ``oldest`` may be an envelope), None: none
    release: str | None
    #: the outbox entry: the tasks in other slots of a cluster (None: none)
    outbox: bytes | None
    #: per event of a join rule or a fan-out, a map of :data:`JOIN_HIT_FIELDS`
    joins: list[Any]
    #: the lineage bucket's expiry (ms; 0: no record kept), and its most fields
    lineage_ttl_ms: int = 0
    lineage_max: int = 0
    #: the tasks' lineage records, field, value pairs: a raw task's one pair, a
    #: message's two (``t:<task>`` pointing to ``m:<id>``); a task row names its first
    records: list[Any] = field(default_factory=list)

    def pack(self) -> bytes:
        """The header as commit.lua's ARGV[1] (bytes as MessagePack's str: Redis's
        cmsgpack reads no bin type)."""
        packed: bytes = msgpack.packb(
            {name: getattr(self, name) for name in HEADER_FIELDS}, use_bin_type=False
        )
        return packed


#: :class:`CommitHeader`'s field names.
HEADER_FIELDS = tuple(f.name for f in fields(CommitHeader))


def lua_constants() -> str:
    """The Lua lines that state this module's constants, put in front of every script."""
    lines = [
        f"local {', '.join(s.name for s in Status)} = {', '.join(str(s.value) for s in Status)}",
        f"local {', '.join(f'T_{name.upper()}' for name in TASK_FIELDS)} = "
        f"{', '.join(str(i) for i in range(1, len(TASK_FIELDS) + 1))}",
        f"local PUSH_CHUNK, FORGET_CHUNK, FORGET_EVERY = {PUSH_CHUNK}, {FORGET_CHUNK}, "
        f"{FORGET_EVERY}",
        f"local {', '.join(f'H_{name.upper()}' for name in JOIN_HIT_FIELDS)} = "
        f"{', '.join(str(i) for i in range(1, len(JOIN_HIT_FIELDS) + 1))}",
        f"local FAN_OUT_TTL_MS, JOIN_DATA_LIMIT = {FAN_OUT_TTL_MS}, {JOIN_DATA_LIMIT}",
        f"local MEMBERS_LIMIT = {MEMBERS_LIMIT}",
    ]
    return "\n".join(lines) + "\n"

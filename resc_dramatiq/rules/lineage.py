"""Lineage: why a task exists, carried from each message to the tasks it causes (pure).

Every Dramatiq message a rule makes carries its **cause** in the message option
``resc_cause`` (:data:`CAUSE_OPTION`)::

    {"root": "<message id>", "parent": "<message id>" | null, "event": "treat/1/42",
     "rule": "report", "watcher": "global/done", "trace": "00-…-…-01",
     "members": ["<message id>", …], "envelope": true}

* ``root``: the id of the first message of its chain; a message made from an event that
  came from outside (a producer's plain event, a schedule's tick) is its own root;
* ``parent``: the id of the message whose done event made it (null: none);
* ``event``: that event's text (at most :data:`EVENT_LIMIT` characters, cut with ``…``);
* ``rule`` and ``watcher``: the rule that made it and the input list it read;
* ``trace`` (only when known): the W3C ``traceparent`` of the finishing message (its
  in-memory option ``resc_trace``, :data:`TRACE_OPTION`), validated, passed on unchanged;
* ``members`` (a join's make only): the message ids of the group's members that came
  with one (at most :data:`MEMBERS_LIMIT`), filled in by the commit that completes the
  group (the planner leaves a ``"resc-ids-<id>"`` string there for it);
* ``member_traces`` (a join's make only, beside ``members``): the traceparents of the
  members that came with one, as many and filled in the same way, for a tracing
  middleware's span links;
* ``envelope`` (only when true): the done list this message reports to reads
  envelopes, so ``Completion`` writes its done event as one with a ``cause``.

A done event carries its message's cause in its envelope (``rules/data.py``):
``{"resc": 1, "event": …, "data": {…}, "cause": {"message": id, "root": id, "trace": …}}``
(:class:`DoneCause`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

#: The message option holding a rule-made message's cause.
CAUSE_OPTION = "resc_cause"
#: The in-memory message option a tracing middleware sets: the message's traceparent.
TRACE_OPTION = "resc_trace"
#: Most characters of an event kept in a cause.
EVENT_LIMIT = 1024
#: Most member ids a join's make's cause lists.
MEMBERS_LIMIT = 100
#: Longest id (a message id, a root) a done event's cause may give.
ID_LIMIT = 128
#: Longest traceparent kept (version 00 is 55 characters; later versions may add fields).
TRACE_LIMIT = 256
#: A planned message's lineage record when it is the message itself (see :func:`record`).
MESSAGE_IS_RECORD = b"="
#: Longest message kept as its own record (a longer one gets a record of its own).
MESSAGE_RECORD_LIMIT = 4096

_TRACE = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[0-9a-zA-Z._-]+)*")
_ID = re.compile(r"[0-9A-Za-z._:-]+")


def valid_trace(value: Any) -> str | None:
    """``value`` when it is a W3C traceparent (bounded, lowercase hex fields, not the
    invalid version ``ff``, not all-zero ids), else None."""
    if not isinstance(value, str) or len(value) > TRACE_LIMIT or not _TRACE.fullmatch(value):
        return None
    version, trace_id, span_id = value[:2], value[3:35], value[36:52]
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if version == "00" and len(value) != 55:
        return None
    return value


def valid_id(value: Any) -> str | None:
    """``value`` when it can be a message id (bounded, no spaces nor odd characters)."""
    if isinstance(value, str) and len(value) <= ID_LIMIT and _ID.fullmatch(value):
        return value
    return None


def clip(event: str) -> str:
    """``event`` cut to :data:`EVENT_LIMIT` characters (``…`` marks a cut)."""
    return event if len(event) <= EVENT_LIMIT else event[: EVENT_LIMIT - 1] + "…"


@dataclass(frozen=True, slots=True)
class DoneCause:
    """What a done event says of the message that finished: its id, its chain's root
    and its trace (None: unknown)."""

    message: str
    root: str
    trace: str | None = None

    @classmethod
    def read(cls, value: Any) -> DoneCause | None:
        """The cause of an envelope's ``cause`` field; None when it is not a valid one
        (an event from elsewhere keeps working, without lineage)."""
        if not isinstance(value, Mapping):
            return None
        message, root = valid_id(value.get("message")), valid_id(value.get("root"))
        if message is None:
            return None
        return cls(message, root or message, valid_trace(value.get("trace")))

    def as_dict(self) -> dict[str, str]:
        """The envelope's ``cause`` field."""
        found = {"message": self.message, "root": self.root}
        if self.trace is not None:
            found["trace"] = self.trace
        return found


def done_cause(message_id: str, options: Mapping[str, Any]) -> DoneCause:
    """The cause a finished message's done event carries: its id, its root (its own
    cause's root, else itself) and its trace (``resc_trace``, when valid)."""
    own = options.get(CAUSE_OPTION)
    root = valid_id(own.get("root")) if isinstance(own, Mapping) else None
    return DoneCause(message_id, root or message_id, valid_trace(options.get(TRACE_OPTION)))


def carries(options: Mapping[str, Any]) -> bool:
    """True when a rule-made message's done list reads envelopes (its cause says so)."""
    own = options.get(CAUSE_OPTION)
    return isinstance(own, Mapping) and own.get("envelope") is True


@dataclass(slots=True)
class Cause:
    """The cause of the messages one event makes through one rule (see the module)."""

    parent: DoneCause | None
    event: str
    rule: str
    watcher: str
    envelope: bool = False
    #: the members' message ids, or the string the commit replaces with them
    members: Sequence[str] | str | None = None
    _tail: str | None = None  # the JSON after the root, encoded once
    _kept: str | None = None  # the same, as a lineage record keeps it

    def as_dict(self, own_id: str) -> dict[str, Any]:
        """The ``resc_cause`` option of the message ``own_id``."""
        p = self.parent
        found: dict[str, Any] = {
            "root": p.root if p is not None else own_id,
            "parent": p.message if p is not None else None,
            "event": clip(self.event),
            "rule": self.rule,
            "watcher": self.watcher,
        }
        if p is not None and p.trace is not None:
            found["trace"] = p.trace
        if isinstance(self.members, str):  # the commit's token: "resc-ids-<x>"
            found["members"] = self.members
            found["member_traces"] = "resc-traces-" + self.members.removeprefix("resc-ids-")
        elif self.members is not None:
            found["members"] = list(self.members[:MEMBERS_LIMIT])
        if self.envelope:
            found["envelope"] = True
        return found

    def encoded(self, own_id: str) -> str:
        """:meth:`as_dict` as compact JSON (byte for byte ``json.dumps``'s), its part
        after the root encoded once."""
        if self._tail is None:
            kept = self._kept = self._kept or self._after_root()
            self._tail = kept[:-1] + ',"envelope":true}' if self.envelope else kept
        root = self.parent.root if self.parent is not None else own_id
        return '{"root":' + encode_basestring_ascii(root) + "," + self._tail

    def kept(self, own_id: str | None) -> str:
        """The cause as a lineage record keeps it (JSON): no ``envelope`` (what the
        worker is told, not why the task exists); ``own_id`` None: a raw task, whose
        root is its parent's, else null."""
        if self._kept is None:
            self._kept = self._after_root()
        root = self.parent.root if self.parent is not None else own_id
        text = "null" if root is None else encode_basestring_ascii(root)
        return '{"root":' + text + "," + self._kept

    def _after_root(self) -> str:
        """The JSON of :meth:`as_dict` after its root, as ``json.dumps`` writes it, but
        for ``envelope``."""
        esc, p = encode_basestring_ascii, self.parent
        parent = "null" if p is None else esc(p.message)
        found = (
            f'"parent":{parent},"event":{esc(clip(self.event))},"rule":{esc(self.rule)},'
            f'"watcher":{esc(self.watcher)}'
        )
        if p is not None and p.trace is not None:
            found += f',"trace":{esc(p.trace)}'
        if isinstance(self.members, str):
            traces = "resc-traces-" + self.members.removeprefix("resc-ids-")
            found += f',"members":{esc(self.members)},"member_traces":{esc(traces)}'
        elif self.members is not None:
            ids = ",".join(esc(m) for m in self.members[:MEMBERS_LIMIT])
            found += f',"members":[{ids}]'
        return found + "}"


def record_of_message(
    task: str,
    queue: str,
    cause: Cause | None,
    message: tuple[str, str, str],
    payload: bytes,
    at_ms: int,
) -> bytes:
    """A Dramatiq message's lineage record: :data:`MESSAGE_IS_RECORD` (the commit keeps
    the message's JSON itself, which holds all a record says: nothing more to encode or
    send) unless the message is longer than :data:`MESSAGE_RECORD_LIMIT` bytes (a large
    payload): then a record of its own (:func:`record`)."""
    if len(payload) <= MESSAGE_RECORD_LIMIT:
        return MESSAGE_IS_RECORD
    return record(task, queue, cause, message, at_ms)


def record(
    task: str, queue: str, cause: Cause | None, message: tuple[str, str, str] | None, at_ms: int
) -> bytes:
    """A task's lineage record (JSON, as ``json.dumps`` writes it): what it is, where it
    went, why; ``message`` is (message id, Redis message id, actor) for a Dramatiq
    message. Built by parts: the cause's are encoded once per event and rule."""
    esc = encode_basestring_ascii
    found = f'{{"task":{esc(clip(task))},"queue":{esc(queue)},"at":{at_ms}'
    if message is not None:  # the ids are UUIDs (rules/ids.py): nothing to escape
        found += f',"message":"{message[0]}","redis":"{message[1]}","actor":{esc(message[2])}'
    if cause is not None:
        found += ',"cause":' + cause.kept(message[0] if message is not None else None)
    return (found + "}").encode()

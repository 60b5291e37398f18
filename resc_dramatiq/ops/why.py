"""``why``: a task's or a message's causes, walked back to the root, each with its status.

A watcher with ``lineage`` on keeps a record per task its commits queued (see
:mod:`resc_dramatiq.rules.lineage`) in its ``I/lineage/<n>`` hashes, one per stretch of
time (:meth:`~...store.keys.WatcherKeys.lineage_recent`): ``t:<task>`` and, for a
Dramatiq message, ``m:<message id>``; the newest record of a name wins.
:func:`why` starts from the record of a message id or a task string, and follows each
record's cause to its parent message's record (or, for an event with no parent
message, to the record of the task whose done event it is: a raw task), until the
chain's root: a message no rule made, or an event that came from outside. Each step
gets its status, read now.

Every read is bounded and typed: a key holding another type reads as empty and is
reported (``odd``); a record that is no JSON object ends the walk with a note.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis

from ..config.model import WatcherSpec
from ..rules.lineage import valid_id
from ..rules.messages import delay_queue_name, read_message_record
from ..store.keys import DramatiqKeys, WatcherKeys, message_markers
from .odd_keys import Reads

#: Most steps walked back (a chain longer than this is cut, and says so).
MAX_STEPS = 64
#: Longest TASK or MESSAGE_ID asked about.
MAX_INPUT = 4096
#: Most workers whose acks are asked (a message is running when one holds it).
MAX_WORKERS = 256
#: Most dead letters of a watcher read to find a raw task's.
MAX_DEAD = 1000


class WhyError(ValueError):
    """Raised when the asked task or message id cannot be looked up (empty, too long)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One link of a chain: a message, a raw task, or the root event."""

    kind: str  # "message", "task" or "event"
    name: str  # the message id, the task string, or the event's text
    status: str  # queued, delayed, running, done, dead, taken, unknown (event: "root")
    task: str | None = None
    queue: str | None = None
    actor: str | None = None
    rule: str | None = None
    watcher: str | None = None  # the input list whose rule made it
    event: str | None = None  # the event that made it
    root: str | None = None
    parent: str | None = None  # the message whose done event made it
    trace: str | None = None
    members: tuple[str, ...] = ()
    at_ms: int | None = None


@dataclass(slots=True)
class Chain:
    """The steps from the asked task or message back to the root (first: the asked)."""

    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)


def why(
    client: redis.Redis, specs: Sequence[WatcherSpec], namespace: str, asked: str
) -> Chain | None:
    """The chain of ``asked`` (a message id or a task string); None when no watcher
    holds a record of it (lineage off, expired, or never made)."""
    if not asked or len(asked) > MAX_INPUT:
        raise WhyError(f"give a task or a message id of 1 to {MAX_INPUT} characters")
    walk = _Walk(client, specs, DramatiqKeys(namespace))
    found = walk.record("m:" + asked) if valid_id(asked) else None
    found = found or walk.record("t:" + asked)
    if found is None:
        return None
    chain = Chain()
    seen: set[str] = set()
    while found is not None:
        record, _ = found
        step = walk.step(record)
        if step.name in seen or len(chain.steps) >= MAX_STEPS:
            chain.notes.append(f"the walk stops at {step.name!r}: a cycle, or over {MAX_STEPS}")
            break
        seen.add(step.name)
        chain.steps.append(step)
        found = walk.parent(step, chain)
    chain.odd = [str(o) for o in walk.reads.odd]
    return chain


class _Walk:
    def __init__(self, client: redis.Redis, specs: Sequence[WatcherSpec], d: DramatiqKeys) -> None:
        self.client, self.specs, self.dramatiq = client, specs, d
        self.reads = Reads(client)
        seconds, micros = client.time()
        self.now_ms = seconds * 1000 + micros // 1000

    def record(self, name: str) -> tuple[dict[str, Any], str] | None:
        """The record ``name`` (``t:…``/``m:…``) in the newest bucket of the first watcher
        holding it (watchers with ``lineage`` on only: the others keep none)."""
        c = self.client
        for spec in self.specs:
            kept = spec.kept_lineage
            if kept is None:
                continue
            buckets = WatcherKeys.of(spec, "").lineage_recent(self.now_ms, kept.ttl_s * 1000)
            for key in buckets:
                raw: Any = self.reads.read(key, "hash", partial(c.hget, key, name), None)
                if raw is None:
                    continue
                try:
                    found = json.loads(raw)
                except ValueError:
                    found = None
                if isinstance(found, dict) and "options" in found:  # a message as its record
                    found = read_message_record(found)
                if isinstance(found, dict) and set(found) == {"see"} and name[:2] == "t:":
                    see = valid_id(found["see"])  # a message's task: its record by id
                    return self.record("m:" + see) if see is not None else None
                if isinstance(found, dict):
                    return found, spec.input_queue
        return None

    def step(self, record: dict[str, Any]) -> Step:
        found = record.get("cause")
        cause: dict[str, Any] = found if isinstance(found, dict) else {}
        message, task, queue = record.get("message"), record.get("task"), record.get("queue")
        listed = cause.get("members")
        members: list[Any] = listed if isinstance(listed, list) else []
        common: dict[str, Any] = {
            "task": _text(task),
            "queue": _text(queue),
            "actor": _text(record.get("actor")),
            "rule": _text(cause.get("rule")),
            "watcher": _text(cause.get("watcher")),
            "event": _text(cause.get("event")),
            "root": _text(cause.get("root")),
            "parent": _text(cause.get("parent")),
            "trace": _text(cause.get("trace")),
            "members": tuple(str(m) for m in members[:100]),
            "at_ms": record.get("at") if isinstance(record.get("at"), int) else None,
        }
        if isinstance(message, str):
            redis_id = _text(record.get("redis")) or ""
            status = self.message_status(message, redis_id, common["queue"], common["watcher"])
            return Step("message", message, status, **common)
        return Step("task", _text(task) or "", self.task_status(common["task"], queue), **common)

    def parent(self, step: Step, chain: Chain) -> tuple[dict[str, Any], str] | None:
        """The record of what made ``step``; the root step added when there is none."""
        parent = step.parent
        record = self.record("m:" + parent) if parent else None
        if record is not None:
            return record
        if parent:  # a message no rule made (your code sent it), or its record expired
            status = self.marked(parent, step.watcher)
            chain.steps.append(Step("message", parent, status, watcher=step.watcher))
            return None
        if step.event is None:
            return None
        found = self.record("t:" + step.event)  # a raw task whose done event it is
        if found is not None and not isinstance(found[0].get("message"), str):
            return found
        chain.steps.append(Step("event", step.event, "root", watcher=step.watcher))
        return None

    def message_status(
        self, message_id: str, redis_id: str, queue: str | None, done: str | None
    ) -> str:
        """Where message ``message_id`` is now (Dramatiq's keys, then its done list's
        markers)."""
        d, read, c = self.dramatiq, self.reads.read, self.client
        if queue and redis_id:
            dead = d.dead(queue)
            if read(dead, "zset", lambda: c.zscore(dead, redis_id), None) is not None:
                return "dead"
            delayed = d.messages(delay_queue_name(queue))
            if read(delayed, "hash", lambda: c.hexists(delayed, redis_id), False):
                return "delayed"
            msgs = d.messages(queue)
            if read(msgs, "hash", lambda: c.hexists(msgs, redis_id), False):
                return "running" if self.held(queue, redis_id) else "queued"
        return self.marked(message_id, done)

    def marked(self, message_id: str, done: str | None) -> str:
        """``done`` when the message's done (or failure) event was written, else unknown."""
        if done is None:
            return "unknown"
        key, c = message_markers(done), self.client
        found = self.reads.read(key, "zset", lambda: c.zscore(key, message_id), None)
        return "done" if found is not None else "unknown"

    def held(self, queue: str, redis_id: str) -> bool:
        d, c = self.dramatiq, self.client
        none: Any = []
        workers = self.reads.read(
            d.heartbeats, "zset", lambda: c.zrange(d.heartbeats, 0, MAX_WORKERS - 1), none
        )
        for w in workers:
            acks = d.acks(_text(w) or "", queue)
            if self.reads.read(acks, "set", partial(c.sismember, acks, redis_id), 0):
                return True
        return False

    def task_status(self, task: str | None, queue: Any) -> str:
        if not task or not isinstance(queue, str):
            return "unknown"
        c = self.client
        at: Any = self.reads.read(queue, "list", lambda: c.lpos(queue, task), None)
        if at is not None:
            return "queued"
        for spec in self.specs:
            none: list[bytes | str] = []
            dead = self.reads.read(
                spec.dead_queue, "list", partial(c.lrange, spec.dead_queue, 0, MAX_DEAD - 1), none
            )
            for entry in dead:
                try:
                    if json.loads(entry).get("event") == task:
                        return "dead"
                except (ValueError, AttributeError):
                    continue
        return "taken"


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None

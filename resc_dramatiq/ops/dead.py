"""The dead letters of a watcher: read them, put them back in line, or drop them.

The commit script ``LPUSH``es a JSON entry onto the watcher's ``dead_queue`` for each
event that failed ``max_attempts`` times (see ``store.commit.dead_letter_entry``), so
the list is newest first. :func:`list_dead` reads it in bounded pages;
:func:`requeue` and :func:`drop` move entries with ``dead.lua``, one atomic step per
entry (sent a small group per call): the entry is removed with ``LREM`` (one occurrence,
looked for from the end it was read from: a move of all reads from the oldest end, so
each entry is found at once whatever the list's length) and, only when that removed it,
its event is pushed back onto the input list. Several operators, or a crash half-way,
can therefore neither lose an event nor requeue it twice. A dry run of all counts the
list.

Every read is bounded: ``LRANGE`` a page at a time, at most ``scan`` entries looked at
per :func:`list_dead` call, at most the list's length at the start per move of all.

Over ~250 lines on purpose: listing, requeuing and dropping share how entries are
matched and read; apart, each would repeat it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import redis

from ..config.model import WatcherSpec
from ..rules.patterns import Pattern, compile_pattern, decode_event
from ..store.keys import WatcherKeys
from ..store.scripts import Scripts, refusal, wrong_type

#: Entries read per ``LRANGE``.
PAGE = 500
#: Entries sent per call of ``dead.lua`` (each moved atomically on its own).
GROUP = 100
#: Most entries a :func:`list_dead` call looks at when filtering with ``match``.
SCAN = 10_000

#: Every entry of the list, for :func:`requeue` and :func:`drop`.
ALL: Literal["all"] = "all"

Watcher = WatcherSpec | WatcherKeys


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of a dead-letter list."""

    entry: bytes  # the entry exactly as stored: what requeue and drop address
    event: bytes  # the event's bytes (from ``event_hex`` when it was not UTF-8)
    text: str  # the event as text (undecodable bytes replaced)
    rule: str
    error: str
    attempts: int
    at_s: int  # when it was dead-lettered, unix seconds
    problem: str = ""  # what is malformed in the entry (its other fields are read)


@dataclass(frozen=True, slots=True)
class DeadPage:
    """A page of dead letters, newest first."""

    letters: tuple[DeadLetter, ...]
    size: int  # entries in the list when it was read
    next_offset: int | None  # where the next page starts; None: the end was reached


def keys_of(watcher: Watcher) -> WatcherKeys:
    """The keys of ``watcher`` (a spec or its keys)."""
    return watcher if isinstance(watcher, WatcherKeys) else WatcherKeys.of(watcher, "")


def parse(stored: bytes | str) -> DeadLetter:
    """Read one entry; one that is not a dead-letter entry stands for its own bytes. A
    malformed field (``"attempts": "three"``, ``"at": 1e400``, ``"event_hex": "zz"``)
    reads as 0 or, for the event, as its text, and is named in ``problem``: a requeue
    still puts the event back, a listing still shows the letter."""
    entry = stored.encode() if isinstance(stored, str) else stored  # decode_responses
    try:
        data: Any = json.loads(entry)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return DeadLetter(entry, entry, decode_event(entry), "", "not a dead-letter entry", 0, 0)
    problems: list[str] = []
    event = data["event"].encode("utf-8", "replace")  # a lone surrogate cannot be UTF-8
    hex_event = data.get("event_hex")
    if hex_event is not None:
        try:
            event = bytes.fromhex(hex_event) if isinstance(hex_event, str) else b""
        except ValueError:
            event = b""
        if not event:
            event = data["event"].encode("utf-8", "replace")
            problems.append(f"event_hex is no hex: {str(hex_event)[:40]!r}")
    return DeadLetter(
        entry=entry,
        event=event,
        text=decode_event(event),
        rule=str(data.get("rule", "")),
        error=str(data.get("error", "")),
        attempts=_whole(data, "attempts", problems),
        at_s=_whole(data, "at", problems),
        problem="; ".join(problems),
    )


def _whole(data: dict[str, Any], name: str, problems: list[str]) -> int:
    """``data[name]`` as a whole number (0 when absent); else 0, the problem noted."""
    value = data.get(name, 0)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    problems.append(f"{name} is no number: {json.dumps(value)[:40]}")
    return 0


def list_dead(
    client: redis.Redis,
    watcher: Watcher,
    *,
    match: Pattern | str | None = None,
    offset: int = 0,
    limit: int = 50,
    scan: int = SCAN,
) -> DeadPage:
    """At most ``limit`` dead letters from position ``offset``, newest first.

    ``match`` (a regex searched in the event text, on RE2: linear time) keeps only the
    letters it finds; at most ``scan`` entries are looked at, so a rare match may need
    several calls: go on from ``next_offset`` (a position in the list, not a count of
    matches).
    """
    dead = keys_of(watcher).dead
    pattern = compile_pattern(match) if isinstance(match, str) else match
    size = int(client.llen(dead))
    found: list[DeadLetter] = []
    position, end = offset, min(size, offset + (scan if pattern else limit))
    while position < end and len(found) < limit:
        count = min(PAGE, end - position)
        entries = client.lrange(dead, position, position + count - 1)
        if not entries:
            break
        for i, raw in enumerate(entries):
            letter = parse(raw)
            if pattern is None or pattern.search(letter.text):
                found.append(letter)
                if len(found) == limit:
                    position += i + 1
                    return DeadPage(tuple(found), size, position if position < size else None)
        position += len(entries)
    return DeadPage(tuple(found), size, position if position < size else None)


def select(
    client: redis.Redis, watcher: Watcher, keep: Callable[[DeadLetter], bool]
) -> list[DeadLetter]:
    """Every dead letter ``keep`` accepts, oldest first, read in pages from the old end.

    Positions counted from the old (right) end do not move when newer letters are
    pushed meanwhile; at most the list's length at the start is read.
    """
    return [letter for letter in _oldest_first(client, keys_of(watcher).dead) if keep(letter)]


def requeue(
    client: redis.Redis,
    watcher: Watcher,
    letters: Iterable[DeadLetter] | Literal["all"],
    *,
    dry_run: bool = False,
) -> int:
    """Put the events of ``letters`` (or of every letter) back on the input list.

    The router takes them again as new events: their attempts start afresh. Returns how
    many were requeued (dry run: how many are still there and would be).
    """
    return _move(client, keys_of(watcher), "requeue", letters, dry_run)


def drop(
    client: redis.Redis,
    watcher: Watcher,
    letters: Iterable[DeadLetter] | Literal["all"],
    *,
    dry_run: bool = False,
) -> int:
    """Remove ``letters`` (or every letter) for good; returns how many were removed."""
    return _move(client, keys_of(watcher), "drop", letters, dry_run)


def _move(
    client: redis.Redis,
    keys: WatcherKeys,
    action: str,
    letters: Iterable[DeadLetter] | Literal["all"],
    dry_run: bool,
) -> int:
    every = letters == ALL
    if every and dry_run:  # every letter there now would be moved: no need to look each up
        return int(client.llen(keys.dead))
    script = Scripts(client)["dead"]
    pages = _everything(client, keys.dead) if letters == ALL else _chunks(letters)
    # all is read from the oldest end: each entry is looked for from there
    send = partial(_send, script, keys, action, dry=dry_run, from_oldest=every)
    moved = 0
    for page in pages:  # each page sent whole before the next one is read
        for start in range(0, len(page), GROUP):
            moved += send(page[start : start + GROUP])
    return moved


def _send(
    script: Any,
    keys: WatcherKeys,
    action: str,
    group: list[DeadLetter],
    *,
    dry: bool,
    from_oldest: bool,
) -> int:
    args: list[Any] = [action, "1" if dry else "0", "-1" if from_oldest else "1"]
    for letter in group:
        args += (letter.entry, letter.event)
    script_keys = [keys.dead, keys.input, keys.attempts]
    reply = script(keys=script_keys, args=args)
    refused = refusal(reply, script_keys)
    if refused is not None:
        raise wrong_type(refused, "nothing was moved")
    return int(reply)


def _chunks(letters: Iterable[DeadLetter]) -> Iterator[list[DeadLetter]]:
    page: list[DeadLetter] = []
    for letter in letters:
        page.append(letter)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


def _everything(client: redis.Redis, dead: str) -> Iterator[list[DeadLetter]]:
    """Every letter in pages, oldest first, at most the list's length at the start.

    Moving letters removes them, so the oldest page is read again each time. Events
    dead-lettered anew meanwhile (at the new end) are left for the next call: a requeue
    of all ends even while they keep failing.
    """
    left = int(client.llen(dead))
    while left > 0:
        page = client.lrange(dead, -min(PAGE, left), -1)
        if not page:
            return
        left -= len(page)
        yield [parse(raw) for raw in reversed(page)]


def _oldest_first(client: redis.Redis, dead: str) -> Iterator[DeadLetter]:
    left = int(client.llen(dead))
    seen = 0
    while seen < left:
        count = min(PAGE, left - seen)
        page = client.lrange(dead, -(seen + count), -(seen + 1))
        if not page:
            return
        seen += len(page)
        for raw in reversed(page):
            yield parse(raw)

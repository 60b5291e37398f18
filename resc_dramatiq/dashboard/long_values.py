"""Long values on a page: cut, with a way to get the whole one.

A value from Redis can be megabytes (a dead letter of a huge event); a page shows its
first :data:`CUT` characters and says how many more there are, so a page of them stays
small, and so does its live refresh. A dead letter is addressed by its exact bytes, as
hex, while it is small; past :data:`HEX_MAX` bytes by a reference, ``sha256:<position
hint>:<digest>``, which :func:`resolve` finds again in the list (bounded: from a little
before the hint, at most :data:`FIND` entries). ``GET /watchers/{index}/dead/entry?ref=``
(:mod:`.pages.watchers`) answers the whole entry (as an attachment, plain text).
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis
from starlette.exceptions import HTTPException

#: Characters of a value shown on a page.
CUT = 500
#: Bytes of a dead letter addressed by its hex (twice as long) on a page; longer ones by
#: a reference.
HEX_MAX = 1024
#: Most entries looked at to find a referenced dead letter again.
FIND = 2_000
#: Entries read per ``LRANGE`` while looking.
STEP = 100

PREFIX = "sha256:"


def cut(value: object, limit: int = CUT) -> str:
    """``value`` as text, its first ``limit`` characters and how many more there are."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def is_long(entry: bytes) -> bool:
    """Whether ``entry`` is addressed by a reference rather than by its hex."""
    return len(entry) > HEX_MAX


def entry_ref(entry: bytes, hint: int = 0) -> str:
    """How a page addresses ``entry``: its hex, or a reference for a long one found
    near position ``hint`` of its list."""
    if not is_long(entry):
        return entry.hex()
    return f"{PREFIX}{hint}:{hashlib.sha256(entry).hexdigest()}"


def resolve(client: redis.Redis, key: str, ref: str) -> bytes | None:
    """The entry ``ref`` addresses in list ``key``: its bytes (hex), or the entry found
    again (reference); None when it is gone. Malformed: 400."""
    if not ref.startswith(PREFIX):
        try:
            return bytes.fromhex(ref)
        except ValueError:
            raise HTTPException(400, "malformed entry") from None
    hint, _, digest = ref[len(PREFIX) :].partition(":")
    if not (hint.isascii() and hint.isdigit() and len(hint) < 16 and len(digest) == 64):
        raise HTTPException(400, "malformed entry reference")
    position = max(0, int(hint) - STEP)  # letters dropped since moved it towards the head
    for start in range(position, position + FIND, STEP):
        found: list[Any] = client.lrange(key, start, start + STEP - 1)
        for entry in found:
            if hashlib.sha256(entry).hexdigest() == digest:
                return bytes(entry)
        if len(found) < STEP:
            return None
    return None

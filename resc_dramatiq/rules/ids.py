"""Message ids: random UUID4 strings made in Python, fast and thread-safe.

Ids are made here, not in Lua: a script's randomness is not random.
"""

from __future__ import annotations

import os
import threading

#: The text columns of a UUID's 32 hex digits (the others hold its 4 dashes).
_DIGIT_COLUMNS = [c for c in range(36) if c not in (8, 13, 18, 23)]
#: The variant nibble of a UUID4 (binary 10xx) from a random hex digit: 8, 9, a or b.
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")


def _uuid_strings(count: int = 256) -> list[str]:
    """``count`` random UUID4 strings from one ``os.urandom`` call.

    The text is laid out column by column: one slice assignment writes a column (a hex
    digit, a dash, the version ``4``, the variant) of every id at once, so an id costs
    little more than the slice that cuts it out.
    """
    digits = os.urandom(16 * count).hex().encode()
    text = bytearray(36 * count)
    for digit, column in enumerate(_DIGIT_COLUMNS):
        text[column::36] = digits[digit::32]
    for column in (8, 13, 18, 23):
        text[column::36] = b"-" * count
    text[14::36] = b"4" * count
    text[19::36] = text[19::36].translate(_VARIANT)
    ids = text.decode("ascii")
    return [ids[i : i + 36] for i in range(0, len(ids), 36)]


_local = threading.local()


def new_id() -> str:
    """A fresh random UUID4 string (generated in Python: Lua randomness is not random).

    Thread-safe (one pool per thread: routers run one thread per watcher and workers
    route in theirs), and about ten times faster than ``str(uuid.uuid4())``.
    """
    try:
        ids: list[str] = _local.ids
        return ids.pop()
    except (AttributeError, IndexError):  # this thread's first id, or its pool is used up
        ids = _local.ids = _uuid_strings()
        return ids.pop()

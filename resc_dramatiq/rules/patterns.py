"""resc's regexes in Python: Rust's named groups accepted, catastrophic backtracking refused.

Also the one decoding of events (and Redis replies) from bytes: UTF-8, undecodable
bytes replaced, never a crash.
"""

from __future__ import annotations

import re

from .backtracking import nested_unbounded_repeat

#: Rust's ``(?<name>…)`` named groups, which Python spells ``(?P<name>…)``.
RUST_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a resc regex (Rust syntax for named groups accepted).

    Raises :class:`re.error` for invalid syntax and for patterns that can backtrack
    catastrophically (see :mod:`.backtracking`).
    """
    try:
        compiled = re.compile(python_group_syntax(pattern))
        nested = nested_unbounded_repeat(compiled.pattern)
    except OverflowError as e:  # a repeat count such as {4294967296}
        raise re.error(str(e)) from None
    except RecursionError:
        raise re.error("it nests too deeply") from None
    if nested:
        raise re.error(
            "it can backtrack catastrophically (an unbounded quantifier inside another,"
            " as in (a+)+); bound the inner part or make the outer one possessive (++, *+)"
        )
    return compiled


def python_group_syntax(pattern: str) -> str:
    """``pattern`` with Rust's ``(?<name>`` as ``(?P<name>``.

    Escaped parentheses (``\\(?<a``) and character classes (``[(?<a]``) are left alone;
    so are lookbehinds (``(?<=``, ``(?<!``).
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if RUST_NAMED_GROUP.match(pattern, i):
            out.append("(?P<")
            i += 3
            continue
        if pattern[i] == "\\":
            step = 2
        elif pattern[i] == "[":
            step = _class_length(pattern, i)
        else:
            step = 1
        out.append(pattern[i : i + step])
        i += step
    return "".join(out)


def _class_length(pattern: str, start: int) -> int:
    """Length of the character class opening at ``start`` (to its ``]``, or the end)."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):  # a "]" first in the class is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return min(i + 1, len(pattern)) - start


def decode_event(event: bytes | str) -> str:
    """Events are UTF-8; undecodable bytes become U+FFFD instead of crashing."""
    return event if isinstance(event, str) else event.decode("utf-8", "replace")

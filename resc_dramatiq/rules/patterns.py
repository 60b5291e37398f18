"""resc's regexes on a linear-time engine: RE2, as resc's Rust ``regex`` crate.

Python's ``re`` backtracks: ``^(a|a)*$`` takes minutes on a 41-character event. RE2
(``google-re2``) never does: its time is linear in the event's length, whatever the
pattern, and its syntax is resc's (named groups ``(?P<name>…)`` or ``(?<name>…)``, no
backreferences, no lookaround). A pattern RE2 cannot run is refused when it is compiled,
with RE2's reason.

The compiled RE2 is called directly (its extension's ``Match``, on UTF-8 bytes), not
through the ``re``-like wrapper of the package: the wrapper builds a match object and
converts every offset, several times the cost of the match itself on a short event.

Also the one lenient decoding of events (and Redis replies) from bytes for display:
UTF-8, undecodable bytes replaced, never a crash. The router itself never matches a
replaced event (see :func:`strict_text`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# google-re2's compiled extension (the package ships no type information)
_re2: Any = importlib.import_module("re2._re2")

#: Rust's ``(?<name>…)`` named groups, which Python spells ``(?P<name>…)``.
RUST_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")
#: A named group's opening, in Python's spelling.
_NAMED_GROUP = re.compile(r"\(\?P<([^>]*)>")
#: A counted repeat; RE2 reads one whose count overflows as literal text, Rust refuses it.
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
#: RE2's (and Rust's) largest repeat count.
MAX_REPEAT = 1000

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH


class PatternError(re.error):
    """Raised when a pattern is not one RE2 can run (bad syntax, a backreference, …).

    A :class:`re.error`, so that callers written for Python's ``re`` catch it as before.
    """


def _options() -> Any:
    options = _re2.RE2.Options()
    options.log_errors = False  # the reason goes into the exception, not to stderr
    return options


_OPTIONS = _options()


class Pattern:
    """A compiled resc regex: unanchored search, named groups, linear time."""

    __slots__ = ("_match", "_names", "groupindex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = python_group_syntax(pattern)
        names = _scan(self.pattern)
        try:
            compiled = _re2.RE2(self.pattern.encode("utf-8"), _OPTIONS)
        except UnicodeEncodeError:
            raise PatternError("it is not valid Unicode (a lone surrogate)") from None
        if not compiled.ok():
            raise PatternError(compiled.error().decode("utf-8", "replace"))
        index = {name.decode(): i for name, i in compiled.NamedCapturingGroups()}
        if len(index) != len(names):
            seen = sorted({n for n in names if names.count(n) > 1})
            raise PatternError(f"a group name is used twice: {', '.join(seen)}")
        #: Named groups and their numbers, as ``re.Pattern.groupindex``.
        self.groupindex: Mapping[str, int] = MappingProxyType(index)
        self._names = tuple(sorted(index.items(), key=lambda item: item[1]))
        self._match = compiled.Match

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def variables(self, text: str, data: bytes) -> dict[str, str] | None:
        """The named groups that took part in the first match of ``text``, or None.

        ``data`` is ``text`` in UTF-8 (the bytes the router took): RE2 reads bytes, and
        its offsets are byte offsets, the same as ``text``'s when it is all ASCII.
        """
        spans = self._match(_UNANCHORED, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        found = {}
        if len(data) == len(text):
            for name, i in self._names:
                start, end = spans[i]
                if start >= 0:
                    found[name] = text[start:end]
        else:
            for name, i in self._names:
                start, end = spans[i]
                if start >= 0:
                    found[name] = data[start:end].decode("utf-8", "surrogatepass")
        return found

    def search(self, text: str) -> bool:
        """True when the pattern matches somewhere in ``text``."""
        data = text.encode("utf-8", "surrogatepass")
        return bool(self._match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)

    def fullmatch(self, text: str) -> bool:
        """True when the pattern matches the whole of ``text``."""
        data = text.encode("utf-8", "surrogatepass")
        return bool(self._match(_BOTH, data, 0, len(data))[0][0] >= 0)


def compile_pattern(pattern: str) -> Pattern:
    """Compile a resc regex (Rust's ``(?<name>…)`` accepted).

    Raises :class:`PatternError` with RE2's reason for a pattern it cannot run.
    """
    return Pattern(pattern)


def _scan(pattern: str) -> list[str]:
    """The names of the named groups of ``pattern`` (Python spelling), in order.

    Raises :class:`PatternError` for a repeat count above :data:`MAX_REPEAT`, which RE2
    would otherwise read as literal text when it overflows (``a{4294967296}``).
    """
    names = []
    i = 0
    while i < len(pattern):
        found = _NAMED_GROUP.match(pattern, i)
        if found:
            names.append(found.group(1))
        repeat = _REPEAT.match(pattern, i)
        if repeat and any(n and int(n) > MAX_REPEAT for n in repeat.groups()):
            raise PatternError(f"invalid repetition size: {repeat.group()}")
        i += _step(pattern, i)
    return names


def python_group_syntax(pattern: str) -> str:
    """``pattern`` with Rust's ``(?<name>`` as ``(?P<name>``.

    Escaped parentheses (``\\(?<a``) and character classes (``[(?<a]``) are left alone;
    so are lookbehinds (``(?<=``, ``(?<!``), which RE2 then refuses.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if RUST_NAMED_GROUP.match(pattern, i):
            out.append("(?P<")
            i += 3
            continue
        step = _step(pattern, i)
        out.append(pattern[i : i + step])
        i += step
    return "".join(out)


def _step(pattern: str, i: int) -> int:
    """Length of the token at ``i``: an escape, a whole character class, or a character."""
    if pattern[i] == "\\":
        return 2
    if pattern[i] == "[":
        return _class_length(pattern, i)
    return 1


def _class_length(pattern: str, start: int) -> int:
    """Length of the character class opening at ``start`` (to its ``]``, or the end)."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):  # a "]" first in the class is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        if pattern.startswith("[:", i):  # a POSIX class such as [:alpha:] inside it
            end = pattern.find(":]", i + 2)
            if end >= 0:
                i = end + 2
                continue
        i += 2 if pattern[i] == "\\" else 1
    return min(i + 1, len(pattern)) - start


def strict_text(event: bytes) -> str:
    """``event`` decoded as UTF-8; :class:`UnicodeDecodeError` when it is not UTF-8.

    Two events that differ only in invalid bytes must never become the same text
    (``ok/\\xff`` and ``ok/\\xfe`` would both read ``ok/\\ufffd``).
    """
    return event.decode("utf-8")


def not_utf8(error: UnicodeDecodeError) -> str:
    """The reason a non-UTF-8 event is dead-lettered, with where its first bad byte is."""
    return f"event is not valid UTF-8 at byte {error.start}"


def decode_event(event: bytes | str) -> str:
    """Events as text for display: UTF-8, undecodable bytes replaced, never a crash."""
    return event if isinstance(event, str) else event.decode("utf-8", "replace")

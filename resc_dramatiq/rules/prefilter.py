"""Which rules can match an event, found without trying them all: literal requirements.

Every rule still runs as resc runs it (unanchored search, config order); this index only
skips the rules that provably cannot match. Per compiled pattern, Python's own regex
parser (the rules run on RE2; Python's parser only reads their literals, see below) gives
one of three requirements:

- a **prefix**: ``^`` (or ``\\A``) then a run of plain literals (``^acq/(?P<id>\\d+)$``
  needs ``acq/``): the event must start with it;
- a **substring**: a run of plain literals in the pattern's top-level sequence, outside
  any branch or repeat (``/done$`` needs ``/done``): the event must contain it;
- **none**, and the rule is tried on every event.

A pattern under a flag that changes what a literal or ``^`` matches (IGNORECASE,
MULTILINE, VERBOSE, also given inline) gives no requirement: the rule is tried on every
event. A group with flags of its own (``(?i:acq)``) counts as no literal.

RE2's syntax is mostly Python's; where the two could read a pattern differently, no
requirement is given: a pattern Python's parser refuses or warns about (RE2's ``\\pL``,
``\\Q…\\E``, flags in mid-pattern, nested sets), or one with a POSIX class (``[[:alpha:]]``,
which Python would read as a set followed by literals).
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .patterns import Pattern

# the parser ``re.compile`` itself uses (``sre_parse`` in 3.10, deprecated since); typeshed
# has no stubs for it, hence the untyped import
_parser: Any = importlib.import_module("re._parser")

#: Flags under which a parsed LITERAL or ``^`` no longer means what it says.
UNSAFE_FLAGS = re.IGNORECASE | re.MULTILINE | re.VERBOSE

#: ``^`` and ``\A``: the start of the event (``^`` only without MULTILINE).
_START = (_parser.AT_BEGINNING, _parser.AT_BEGINNING_STRING)


@dataclass(frozen=True, slots=True)
class Requirement:
    """What an event needs for a pattern to match it: a prefix, a substring, or nothing."""

    prefix: str = ""
    substring: str = ""


def requirement(pattern: Pattern) -> Requirement:
    """The literal requirement of ``pattern``, or an empty one when none is provable."""
    if "[:" in pattern.pattern:
        return Requirement()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parsed = _parser.parse(pattern.pattern, 0)
    except (re.error, Warning, OverflowError, RecursionError):
        return Requirement()
    if parsed.state.flags & UNSAFE_FLAGS:
        return Requirement()
    items = list(_sequence(parsed.data))
    if items and items[0][0] is _parser.AT and items[0][1] in _START:
        prefix = "".join(_literal_run(items[1:]))
        if prefix:
            return Requirement(prefix=prefix)
    return Requirement(substring=_longest_literal_run(items))


def _sequence(items: Sequence[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    """``items`` with every flag-free group spliced in: a group is matched in sequence too."""
    for op, av in items:
        if op is _parser.SUBPATTERN:
            _group, add_flags, del_flags, body = av
            if not (add_flags or del_flags):
                yield from _sequence(body.data)
                continue
        yield op, av


def _literal_run(items: Sequence[tuple[Any, Any]]) -> Iterator[str]:
    """The characters of the plain literals that open ``items``."""
    for op, av in items:
        if op is not _parser.LITERAL:
            return
        yield chr(av)


def _longest_literal_run(items: Sequence[tuple[Any, Any]]) -> str:
    """The longest run of consecutive plain literals in ``items`` ("" when there is none)."""
    longest = ""
    for start in range(len(items)):
        if start == 0 or items[start - 1][0] is not _parser.LITERAL:
            run = "".join(_literal_run(items[start:]))
            longest = max(longest, run, key=len)
    return longest


@dataclass(frozen=True, slots=True)
class Prefilter:
    """Per event, the indexes of the rules that can match it, in config order.

    Rules by prefix sit in a dict probed with the event's start at each distinct prefix
    length (few in practice); rules by substring are checked with ``in``; the others are
    always candidates.
    """

    by_prefix: dict[str, tuple[int, ...]]
    prefix_lengths: tuple[int, ...]
    by_substring: tuple[tuple[str, int], ...]
    always: tuple[int, ...]
    #: Every rule has a prefix, all of one length.
    prefix_only: bool

    @classmethod
    def build(cls, patterns: Sequence[Pattern]) -> Prefilter:
        """The prefilter of ``patterns``, indexed by their position."""
        by_prefix: dict[str, list[int]] = {}
        by_substring: list[tuple[str, int]] = []
        always: list[int] = []
        for index, pattern in enumerate(patterns):
            needs = requirement(pattern)
            if needs.prefix:
                by_prefix.setdefault(needs.prefix, []).append(index)
            elif needs.substring:
                by_substring.append((needs.substring, index))
            else:
                always.append(index)
        lengths = tuple(sorted({len(prefix) for prefix in by_prefix}))
        return cls(
            by_prefix={prefix: tuple(indexes) for prefix, indexes in by_prefix.items()},
            prefix_lengths=lengths,
            by_substring=tuple(by_substring),
            always=tuple(always),
            prefix_only=len(lengths) == 1 and not by_substring and not always,
        )

    def candidates(self, event: str) -> Sequence[int]:
        """The indexes of the rules that may match ``event``, ascending."""
        if self.prefix_only:  # the common case: a dict probe, and that is all
            return self.by_prefix.get(event[: self.prefix_lengths[0]], ())
        found: list[int] = []
        for length in self.prefix_lengths:
            if length > len(event):
                break
            hit = self.by_prefix.get(event[:length])
            if hit is not None:
                found += hit
        found += [index for substring, index in self.by_substring if substring in event]
        if not found:
            return self.always
        found += self.always
        # each source is ascending; several sources (or lengths) interleave
        return found if len(found) == 1 else sorted(found)

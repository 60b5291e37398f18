"""Refusing regexes that can backtrack catastrophically.

Python's ``re`` has no time limit, so a rule such as ``^(a+)+$`` could freeze a watcher
on a crafted event. Rules are checked at load instead: a quantifier without upper bound
applied to something that itself contains a quantifier without upper bound (star height
above one, as in ``(a+)+``, ``(\\w*/)*`` or ``(?:x|y+)*``) is refused. Rewrite such
patterns with a bounded or possessive inner part (``(?:[^/]+/)++``, ``[\\w/]*``).
"""

from __future__ import annotations

import re._parser as sre  # type: ignore[import-not-found,unused-ignore]
from typing import Any

_UNBOUNDED_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT}


def nested_unbounded_repeat(pattern: str) -> bool:
    """True when ``pattern`` has an unbounded quantifier inside another one."""
    return _scan(sre.parse(pattern), inside_unbounded=False)


def _scan(items: Any, *, inside_unbounded: bool) -> bool:
    for op, arg in items:
        if op in _UNBOUNDED_REPEATS:
            _low, high, sub = arg
            unbounded = high == sre.MAXREPEAT
            if unbounded and inside_unbounded:
                return True
            if _scan(sub, inside_unbounded=inside_unbounded or unbounded):
                return True
        elif op == sre.SUBPATTERN:
            if _scan(arg[-1], inside_unbounded=inside_unbounded):
                return True
        elif op == sre.BRANCH:
            if any(_scan(b, inside_unbounded=inside_unbounded) for b in arg[1]):
                return True
        elif op in (sre.ASSERT, sre.ASSERT_NOT) and _scan(
            arg[1], inside_unbounded=inside_unbounded
        ):
            return True
    return False

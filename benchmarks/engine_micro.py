"""One match of the benchmark's rule, per engine and way of calling it (no Redis).

``python benchmarks/engine_micro.py`` times, on one core, a search plus the named groups
of ``^acq/(?P<process_id>\\d+)/(?P<product_id>\\d+)$`` on an event taken as bytes:
Python's ``re`` (the engine before), google-re2 through its ``re``-like wrapper, the
compiled RE2 called directly as ``rules/patterns.py`` calls it, and an RE2 ``Set`` of 1
and of 301 rules (which rules match, without their groups). Best of 5, microseconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import re2

from resc_dramatiq.rules.patterns import Pattern

RULE = r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$"
EVENT = b"acq/123456/789012"
N = 300_000


def best_us(fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(N):
            fn()
        best = min(best, time.perf_counter() - started)
    return best / N * 1e6


def main() -> None:
    python = re.compile(RULE)
    wrapped = re2.compile(RULE)
    direct = Pattern(RULE)

    def with_re() -> dict[str, str] | None:
        found = python.search(EVENT.decode())
        return None if found is None else found.groupdict()

    def with_wrapper() -> dict[str, str] | None:
        found = wrapped.search(EVENT.decode())
        return None if found is None else found.groupdict()

    def with_direct() -> dict[str, str] | None:
        return direct.variables(EVENT.decode(), EVENT)

    anchor, options = re2._re2.RE2.Anchor.UNANCHORED, re2._re2.RE2.Options()
    sets = {}
    for count in (1, 301):
        one = re2._re2.Set(anchor, options)
        for i in range(count - 1):
            one.Add(rf"^a{i:03d}/(\d+)/(\d+)$".encode())
        one.Add(RULE.encode())
        one.Compile()
        sets[count] = one
    rows = [
        ("re: search + groupdict", with_re),
        ("google-re2 wrapper: search + groupdict", with_wrapper),
        ("RE2 direct (rules/patterns.py): Match + groups", with_direct),
        ("RE2 Set of 1 rule: which match", lambda: sets[1].Match(EVENT)),
        ("RE2 Set of 301 rules: which match", lambda: sets[301].Match(EVENT)),
    ]
    for label, fn in rows:
        us = best_us(fn)
        print(f"{label:48s} {us:5.2f} µs  {1 / us:5.2f} M/s")


if __name__ == "__main__":
    main()

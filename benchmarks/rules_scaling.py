"""How matching scales with the number of rules: every rule tried, against the prefilter.

``python benchmarks/rules_scaling.py [--events N] [--batch B]`` plans events in this
process (no Redis) with 1, 10, 100 and 300 rules of distinct literal prefixes (each
event matches one rule), and with 300 unanchored rules without any literal (every one
a fallback rule). Each is timed twice: through the plain loop resc runs (every rule
searched, in config order) and through ``WatcherRules.matches`` (the prefilter), both
for the matching alone and for ``Planner.plan``. Ratios are against the 1-rule figure
of the same run.
"""

from __future__ import annotations

import argparse
import itertools
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from rich.console import Console
from rich.table import Table

from resc_dramatiq.config.model import Config, WatcherSpec
from resc_dramatiq.rules.model import Match, Rule, WatcherRules
from resc_dramatiq.rules.patterns import decode_event
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.rules.ruleset import RuleSet

MAKE = {"task": "trt/${process_id}", "queue": "bench/todo", "set": "bench/todo/set"}


def plain_matches(rules: Sequence[Rule], event: str) -> list[Match]:
    """resc's matching with no index: every rule searched, in config order (the "before")."""
    found = []
    for index, rule in enumerate(rules):
        variables = rule.match(event)
        if variables is not None:
            found.append(Match(index, rule, variables))
    return found


@dataclass(frozen=True)
class PlainRules:
    """What the planner reads of :class:`WatcherRules`, matching through the plain loop."""

    spec: WatcherSpec
    rules: tuple[Rule, ...]

    def matches(self, event: str) -> list[Match]:
        return plain_matches(self.rules, event)


def _codes(count: int) -> list[str]:
    """``count`` distinct three-letter codes."""
    letters = itertools.product(string.ascii_lowercase, repeat=3)
    return ["".join(code) for code in itertools.islice(letters, count)]


def prefixed(count: int) -> tuple[list[str], Callable[[int], str]]:
    """``count`` anchored rules of distinct literal prefixes, and event ``i``."""
    codes = _codes(count)
    patterns = [rf"^{code}/(?P<process_id>\d+)/(?P<product_id>\d+)$" for code in codes]
    return patterns, lambda i: f"{codes[i % count]}/{i}/{i}"


def unanchored(count: int) -> tuple[list[str], Callable[[int], str]]:
    """``count`` unanchored rules with no literal (classes only), and event ``i``."""
    codes = _codes(count)
    patterns = [
        "".join(f"[{c}{c.upper()}]" for c in code) + r"(?P<process_id>\d+)$" for code in codes
    ]
    return patterns, lambda i: f"{codes[i % count]}{i}"


def compile_rules(patterns: list[str]) -> WatcherRules:
    rules = [{"name": f"r{i}", "on": p, "make": MAKE} for i, p in enumerate(patterns)]
    data = {"watchers": [{"input_queue": "bench/in", "rules": rules}]}
    return RuleSet.compile(Config.from_data(data)).watchers[0]


def events_per_s(
    step: Callable[[Sequence[bytes]], Any], batches: list[list[bytes]], *, repeat: int = 3
) -> float:
    """The best of ``repeat`` runs over ``batches`` (the others met a busier machine)."""
    best_s = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for batch in batches:
            step(batch)
        best_s = min(best_s, time.perf_counter() - started)
    return sum(len(b) for b in batches) / best_s


def measure(
    patterns: list[str], event: Callable[[int], str], *, events: int, batch: int
) -> dict[str, float]:
    """Events per second of matching and planning, plain and prefiltered."""
    rules = compile_rules(patterns)
    plain = PlainRules(spec=rules.spec, rules=rules.rules)
    encoded = [event(i).encode() for i in range(events)]
    batches = [encoded[i : i + batch] for i in range(0, events, batch)]
    sample = decode_event(encoded[0])
    assert rules.matches(sample) and [m.index for m in rules.matches(sample)] == [
        m.index for m in plain.matches(sample)
    ]

    def match_with(matches: Callable[[str], list[Match]]) -> Callable[[Sequence[bytes]], Any]:
        return lambda evs: [matches(decode_event(e)) for e in evs]

    return {
        "match, plain": events_per_s(match_with(plain.matches), batches),
        "match, prefilter": events_per_s(match_with(rules.matches), batches),
        "plan, plain": events_per_s(Planner(cast(WatcherRules, plain)).plan, batches),
        "plan, prefilter": events_per_s(Planner(rules).plan, batches),
    }


def main() -> None:
    """Print events/s per rule count, plain against prefiltered."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    scenarios = [(f"{n} prefixed", *prefixed(n)) for n in (1, 10, 100, 300)]
    scenarios.append(("300 unanchored, no literal", *unanchored(300)))
    results = {
        name: measure(patterns, event, events=args.events, batch=args.batch)
        for name, patterns, event in scenarios
    }
    first = results[scenarios[0][0]]
    table = Table(
        title=f"events/s ({args.events:,} events, batches of {args.batch}); (ratio to 1 rule)"
    )
    table.add_column("rules")
    for column in first:
        table.add_column(column, justify="right")
    for name, row in results.items():
        cells = [f"{value:,.0f} ({value / first[column]:.2f})" for column, value in row.items()]
        table.add_row(name, *cells)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

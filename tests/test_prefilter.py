"""Specification of the prefilter: it skips only rules that cannot match an event."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resc_dramatiq.config.model import Config
from resc_dramatiq.rules.model import WatcherRules
from resc_dramatiq.rules.patterns import compile_pattern
from resc_dramatiq.rules.prefilter import Prefilter, Requirement, requirement
from resc_dramatiq.rules.ruleset import RuleSet


def watcher(*patterns: str) -> WatcherRules:
    """The compiled rules of one watcher, one rule per pattern, as the router compiles them."""
    rules = [{"on": p, "make": {"task": "${input_task}", "queue": "q"}} for p in patterns]
    data = {"watchers": [{"input_queue": "in", "rules": rules}]}
    return RuleSet.compile(Config.from_data(data)).watchers[0]


def plain_matches(rules: WatcherRules, event: str) -> list[tuple[int, dict[str, str]]]:
    """resc's matching without any index: every rule searched, in config order."""
    found = []
    for index, rule in enumerate(rules.rules):
        variables = rule.match(event)
        if variables is not None:
            found.append((index, variables))
    return found


def prefiltered_matches(rules: WatcherRules, event: str) -> list[tuple[int, dict[str, str]]]:
    return [(m.index, m.variables) for m in rules.matches(event)]


# --- what each pattern requires ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (r"^acq/(?P<id>\d+)$", "acq/"),
        (r"\Aacq/\d+", "acq/"),
        (r"^acq\/x\.y", "acq/x.y"),
        (r"^(?P<kind>acq)/\d+", "acq/"),
        (r"^(?<kind>acq)/\d+", "acq/"),  # Rust's named group
        (r"^[a]b", "ab"),
        (r"^acq/x|^acq/y", "acq/"),  # the parser factors the branches' common start out
    ],
)
def test_an_anchored_pattern_requires_its_leading_literals_as_prefix(
    pattern: str, prefix: str
) -> None:
    assert requirement(compile_pattern(pattern)) == Requirement(prefix=prefix)


@pytest.mark.parametrize(
    ("pattern", "substring"),
    [
        (r"acq/(?P<id>\d+)", "acq/"),
        (r"\d+/done$", "/done"),
        (r"^\d+/trt", "/trt"),
        (r"^(a|b)cd", "cd"),
        (r"a?bc", "bc"),
        (r"(?i:ab)cd", "cd"),  # the case-insensitive group is no literal
        (r"^(?i:acq)/x", "/x"),
    ],
)
def test_a_pattern_without_a_prefix_requires_its_longest_top_level_literal_run(
    pattern: str, substring: str
) -> None:
    assert requirement(compile_pattern(pattern)) == Requirement(substring=substring)


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?i)^acq/",  # case-insensitive literals
        r"(?m)^acq/",  # ^ after any newline
        r"[[:alpha:]]acq/",  # RE2's POSIX class: Python would read "]acq/" as literals
        r"^[^[:digit:]]acq/",
        r"^\pLacq/",  # RE2's Unicode class, which Python's parser refuses
        r"^x(?i)acq/",  # RE2's flags in mid-pattern, which Python's parser refuses
        r"^(a|b)",
        r"^\d+",
        r"[ab]+",
        r".*",
        r"^(?:ab)*",
        r"(?i:acq)",
        r"",
    ],
)
def test_a_pattern_without_a_provable_literal_is_tried_on_every_event(pattern: str) -> None:
    assert requirement(compile_pattern(pattern)) == Requirement()


def test_the_prefilter_leaves_only_the_rules_an_event_can_match_in_config_order() -> None:
    patterns = [r"^acq/\d+", r"/done$", r"^a", r"^\d", r"^acq/x"]
    prefilter = Prefilter.build([compile_pattern(p) for p in patterns])
    assert list(prefilter.candidates("acq/x/done")) == [0, 1, 2, 3, 4]
    assert list(prefilter.candidates("acq/1")) == [0, 2, 3]
    assert list(prefilter.candidates("trt/1")) == [3]


def test_rules_sharing_a_prefix_all_stay_candidates() -> None:
    prefilter = Prefilter.build(
        [compile_pattern(p) for p in (r"^acq/\d", r"^acq/(a|b)", r"^acq/\w")]
    )
    assert list(prefilter.candidates("acq/a1")) == [0, 1, 2]


def test_the_compiled_rules_carry_their_prefilter() -> None:
    rules = watcher(r"^acq/(?P<id>\d+)$", r"done")
    assert rules.prefilter.by_prefix == {"acq/": (0,)}
    assert rules.prefilter.by_substring == (("done", 1),)


# --- the property: prefiltered matching is resc's matching --------------------------------

ALPHABET = "ab/.1"
literals = st.text(ALPHABET, min_size=1, max_size=4)


class Drawn:
    """What a drawn pattern is built of: its group names and its literals (to make events)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.literals: list[str] = []

    def literal(self, draw: Any) -> str:
        text = draw(literals)
        self.literals.append(text)
        return re.escape(text)


def _atom(draw: Any, drawn: Drawn) -> str:
    kind = draw(
        st.sampled_from(["lit", "lit", "lit", "class", "digits", "opt", "alt", "group", "group"])
    )
    if kind == "class":
        return draw(st.sampled_from([r"[ab]", r"[^/]", r"\d", r"\w", ".", r"[a-b]+"]))
    if kind == "digits":
        return draw(st.sampled_from([r"\d+", r"\d*", r"\d{1,2}"]))
    if kind == "opt":
        return f"(?:{drawn.literal(draw)}){draw(st.sampled_from(['?', '*', '+', '{2}']))}"
    if kind == "alt":
        return f"({drawn.literal(draw)}|{drawn.literal(draw)})"
    if kind == "group":
        drawn.names.append(f"g{len(drawn.names)}")
        literal = drawn.literal(draw)
        inner = draw(st.sampled_from([literal, literal, r"\d+", r"[ab]+", f"{literal}|b"]))
        name = drawn.names[-1]
        # Python's and Rust's named groups, a plain group and groups with their own flags
        opening = [f"(?P<{name}>", f"(?<{name}>", "(?:", "(?i:", "(?-i:", "(?s:"]
        return draw(st.sampled_from(opening)) + inner + ")"
    return drawn.literal(draw)


@st.composite
def patterns(draw: Any) -> tuple[str, list[str]]:
    """A resc rule pattern (flags, an anchor, atoms, maybe an alternation) and its literals."""
    drawn = Drawn()
    flags = draw(st.sampled_from(["", "", "", "(?i)", "(?m)", "(?s)"]))
    anchor = draw(st.sampled_from(["^", "^", r"\A", ""]))
    body = "".join(_atom(draw, drawn) for _ in range(draw(st.integers(0, 4))))
    end = draw(st.sampled_from(["", "", "$"]))
    pattern = f"{anchor}{body}{end}"
    if draw(st.integers(0, 5)) == 0:
        pattern += "|" + anchor + "".join(_atom(draw, drawn) for _ in range(2))
    return flags + pattern, drawn.literals


@st.composite
def events(draw: Any, rules: WatcherRules, pieces: list[str]) -> str:
    """Text a rule matches, or made of the rules' literals and noise; some upper case,
    some after a newline (the IGNORECASE and MULTILINE rules' events)."""
    piece = st.sampled_from(pieces)
    noise = st.text(ALPHABET + "AB2\n", max_size=3)
    made = st.lists(st.one_of(piece, piece, noise), max_size=5).map("".join)
    matching = st.sampled_from(rules.rules).flatmap(
        lambda rule: st.from_regex(rule.pattern.pattern)
    )
    text = draw(st.one_of(matching, made))
    return draw(st.sampled_from([text, text, text.upper(), "\n" + text, text + "\n"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(patterns(), min_size=1, max_size=6), st.data())
def test_prefiltered_matching_equals_trying_every_rule(
    drawn: list[tuple[str, list[str]]], data: Any
) -> None:
    rules = watcher(*(pattern for pattern, _ in drawn))
    pieces = [literal for _, literals in drawn for literal in literals] or ["a"]
    for _ in range(10):
        event = data.draw(events(rules, pieces), label="event")
        assert prefiltered_matches(rules, event) == plain_matches(rules, event)

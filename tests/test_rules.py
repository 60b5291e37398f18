"""Specification of the rule engine: resc's matching semantics, pure Python."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import ConfigError, RuleError
from resc_dramatiq.rules.patterns import Pattern, compile_pattern, python_group_syntax
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.rules.templates import Template
from tests.helpers import tasks_of

EXAMPLES = Path(__file__).parent.parent / "example_project"


def ruleset(*rules: dict[str, Any]) -> RuleSet:
    data = {"watchers": [{"input_queue": "in", "rules": list(rules)}]}
    return RuleSet.compile(Config.from_data(data))


def rule(on: str, task: str = "${input_task}", queue: str = "q", **more: Any) -> dict[str, Any]:
    return {"on": on, "make": {"task": task, "queue": queue, **more}}


def tasks(rules: RuleSet, event: bytes | str) -> list[tuple[str, str, str | None]]:
    return [(t.task, t.queue, t.set) for t in tasks_of(rules.watchers[0], event)]


def variables(rules: RuleSet, event: str) -> list[dict[str, str]]:
    return [m.variables for m in rules.watchers[0].matches(event)]


# --- the seed's demo ----------------------------------------------------------------------


def test_seed_demo_turns_an_acquisition_into_a_treatment_task() -> None:
    rules = RuleSet.compile(Config.load(EXAMPLES / "demo.conf.json"))
    assert tasks(rules, "acq/123/456") == [("trt/123/456", "trt/123/todo", "products/456/todo")]


def test_seed_demo_ignores_events_its_anchored_regex_does_not_match() -> None:
    rules = RuleSet.compile(Config.load(EXAMPLES / "demo.conf.json"))
    assert tasks(rules, "acq/123/456/extra") == []
    assert tasks(rules, "trt/123/456") == []


# --- which rules run ------------------------------------------------------------------


def test_every_matching_rule_runs_in_config_order() -> None:
    rules = ruleset(rule("b", queue="second"), rule("^a", queue="first"), rule("z", queue="no"))
    assert [queue for _, queue, _ in tasks(rules, "ab")] == ["second", "first"]


def test_every_make_entry_of_a_rule_runs_in_order() -> None:
    rules = ruleset({"on": "x", "make": [{"queue": "1"}, {"queue": "2"}, {"queue": "3"}]})
    assert [queue for _, queue, _ in tasks(rules, "x")] == ["1", "2", "3"]


def test_the_regex_search_is_not_anchored() -> None:
    rules = ruleset(rule(r"(?P<id>\d+)", task="t/${id}"))
    assert tasks(rules, "prefix/42/suffix") == [("t/42", "q", None)]


def test_anchors_are_the_users_to_write() -> None:
    rules = ruleset(rule(r"^acq/\d+$"))
    assert tasks(rules, "acq/1") == [("acq/1", "q", None)]
    assert tasks(rules, "x/acq/1") == []


def test_an_event_no_rule_matches_makes_no_task() -> None:
    assert tasks(ruleset(rule("^a$")), "b") == []


def test_the_same_task_made_by_two_rules_is_made_twice_for_the_store_to_dedup() -> None:
    rules = ruleset(rule("a", set="s"), rule("a", set="s"))
    assert tasks(rules, "a") == [("a", "q", "s"), ("a", "q", "s")]


# --- variables ------------------------------------------------------------------------


def test_input_task_is_the_whole_event() -> None:
    assert variables(ruleset(rule("b")), "abc") == [{"input_task": "abc"}]


def test_named_groups_that_took_part_are_variables() -> None:
    rules = ruleset(rule(r"^(?P<kind>\w+)/(?P<id>\d+)$"))
    assert variables(rules, "acq/7") == [{"kind": "acq", "id": "7", "input_task": "acq/7"}]


def test_optional_groups_that_did_not_take_part_are_absent() -> None:
    rules = ruleset(rule(r"^(?P<id>\d+)(?:/(?P<sub>\w+))?$"))
    assert variables(rules, "7") == [{"id": "7", "input_task": "7"}]
    assert variables(rules, "7/x") == [{"id": "7", "sub": "x", "input_task": "7/x"}]


def test_an_optional_group_that_matched_empty_is_present_and_empty() -> None:
    rules = ruleset(rule(r"^(?P<id>\d*)/"))
    assert variables(rules, "/x") == [{"id": "", "input_task": "/x"}]


def test_a_template_using_an_absent_optional_group_fails_at_run_time() -> None:
    rules = ruleset(rule(r"^a(?P<o>b)?$", task="t/${o}"))
    with pytest.raises(RuleError, match="variable 'o' has no value for this event"):
        tasks_of(rules.watchers[0], "a")


def test_an_empty_queue_name_fails_at_run_time() -> None:
    rules = ruleset(rule(r"^(?P<q>\w*)$", queue="${q}"))
    with pytest.raises(RuleError, match="made an empty queue name"):
        tasks_of(rules.watchers[0], "")


def test_rules_with_fetchers_need_the_fetch_layer() -> None:
    rules = ruleset(
        {
            "on": "x",
            "fetch": [{"url": "http://h/${input_task}", "returns": "r"}],
            "make": {"queue": "q"},
        }
    )
    with pytest.raises(RuleError, match="has fetchers"):
        tasks_of(rules.watchers[0], "x")


# --- regex dialect ----------------------------------------------------------------------


def test_rust_named_groups_are_accepted() -> None:
    rules = ruleset(rule(r"^acq/(?<process_id>\d+)/(?<product_id>\d+)$", task="${product_id}"))
    assert tasks(rules, "acq/1/2") == [("2", "q", None)]


def test_python_named_groups_are_accepted() -> None:
    rules = ruleset(rule(r"^acq/(?P<process_id>\d+)$", task="${process_id}"))
    assert tasks(rules, "acq/1") == [("1", "q", None)]


def test_rust_and_python_groups_mix() -> None:
    rules = ruleset(rule(r"^(?<x>x)(?P<y>y)$", task="${x}${y}"))
    assert tasks(rules, "xy") == [("xy", "q", None)]


@pytest.mark.parametrize(
    ("pattern", "python"),
    [
        (r"(?<a>x)", r"(?P<a>x)"),
        (r"(?<_a1>x)", r"(?P<_a1>x)"),
        (r"(?<=a)(?<!b)", r"(?<=a)(?<!b)"),
        (r"\(?<a>", r"\(?<a>"),  # an optional literal "(" then "<a>"
        (r"\\(?<a>x)", r"\\(?P<a>x)"),  # an escaped backslash, then a group
        (r"[(?<a>]", r"[(?<a>]"),  # a character class
        (r"[]()?<a>](?<b>x)", r"[]()?<a>](?P<b>x)"),  # "]" first in a class is literal
        (r"[^]\](?<a>](?<b>x)", r"[^]\](?<a>](?P<b>x)"),
    ],
)
def test_only_rust_group_openings_are_rewritten(pattern: str, python: str) -> None:
    assert python_group_syntax(pattern) == python


def test_an_escaped_parenthesis_before_a_less_than_is_literal_text() -> None:
    assert compile_pattern(r"^\(?<a$").search("(<a") is not None


def test_the_pattern_is_compiled_once_at_load() -> None:
    [compiled] = ruleset(rule("^a$")).watchers[0].rules
    assert isinstance(compiled.pattern, Pattern)
    assert isinstance(compiled.makes[0].task, Template)


def test_an_invalid_regex_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match=r"watchers\[0\]\.rules\[0\]\.on: invalid regex"):
        ruleset(rule("(unclosed"))


# --- hostile events ---------------------------------------------------------------------


def test_a_non_utf8_event_is_planned_as_failed_with_its_first_bad_byte() -> None:
    rules = ruleset(rule(r"^(?P<body>.*)$", task="t/${body}"))
    batch = Planner(rules.watchers[0]).plan([b"caf\xe9/\xff\xfe", b"ok"], now=0)
    assert [(f.event, f.error) for f in batch.failed] == [
        (b"caf\xe9/\xff\xfe", "event is not valid UTF-8 at byte 3")
    ]
    assert [t.task for t in batch.tasks] == [b"t/ok"]


def test_utf8_bytes_events_are_decoded() -> None:
    rules = ruleset(rule(r"^(?P<body>.*)$", task="t/${body}"))
    assert tasks(rules, "café".encode()) == [("t/café", "q", None)]


@pytest.mark.parametrize(
    "hostile",
    ["${input_task}", "${body}${body}", "{0.__class__}", "{body!r}", "%s%d%%", "$(rm -rf /)"],
)
def test_a_value_is_inserted_verbatim_in_one_pass(hostile: str) -> None:
    rules = ruleset(rule(r"^(?P<body>.*)$", task="t/${body}", set="s/${input_task}"))
    assert tasks(rules, hostile) == [(f"t/{hostile}", "q", f"s/{hostile}")]


@pytest.mark.parametrize("text", ["{0.__class__}", "{input_task}", "%(input_task)s", "$input_task"])
def test_other_template_syntaxes_are_plain_text(text: str) -> None:
    assert tasks(ruleset(rule("x", task=text)), "x") == [(text, "q", None)]


@pytest.mark.parametrize("name", ["__import__", "input_task.__class__", "__builtins__"])
def test_names_that_look_like_code_are_unknown_variables(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown variable \$\{{{re.escape(name)}\}}"):
        ruleset(rule("x", task=f"${{{name}}}"))

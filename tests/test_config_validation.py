"""Specification: a bad config is refused at load with every problem, located."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import ConfigError
from resc_dramatiq.rules.ruleset import RuleSet


def problems_of(text: str, fmt: str = "json", source: str = "rules.json") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        RuleSet.compile(Config.from_text(text, fmt=fmt, source=source))
    return caught.value.problems


def problems_of_data(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        RuleSet.compile(Config.from_data(data, source="rules"))
    return caught.value.problems


def one_rule(make: dict[str, Any], on: str = r"^a/(?P<x>\d+)$") -> dict[str, Any]:
    return {"watchers": [{"input_queue": "in", "rules": [{"on": on, "make": make}]}]}


def test_every_problem_of_the_file_is_reported_at_once() -> None:
    text = """{"watchers": [{"input_queue": "in", "rules": [
  {"on": "^a$", "make": {"task": "${one}", "queue": "q"}},
  {"on": "^b$", "make": {"task": "t", "queue": "${two}"}}
]}]}"""
    assert [p.split(": unknown")[0] for p in problems_of(text)] == [
        "rules.json:2: watchers[0].rules[0].make[0].task",
        "rules.json:3: watchers[0].rules[1].make[0].queue",
    ]


def test_unknown_variable_message_lists_the_available_ones() -> None:
    [problem] = problems_of_data(one_rule({"task": "${y}", "queue": "q"}))
    assert problem.endswith("unknown variable ${y}; available: input_task, x")


def test_unknown_key_far_from_any_lists_the_known_keys() -> None:
    [problem] = problems_of_data(one_rule({"queue": "q", "zzz": 1}))
    assert "make[0].zzz: unknown key; known keys: task, queue, set, actor," in problem


def test_a_single_make_object_is_shown_as_make_0_with_the_line_of_the_key() -> None:
    text = '{"watchers": [{"input_queue": "in", "rules": [{"on": "x",\n"make": {\n"qeue": "q"}}]}]}'
    assert problems_of(text) == [
        "rules.json:3: watchers[0].rules[0].make[0].qeue: unknown key; did you mean 'queue'?"
    ]


def test_seed_era_todo_is_shown_as_todo_not_make() -> None:
    text = '{"watchers": [{"input_queue": "in", "rules": [{"on": "x",\n"todo": {\n"qeue": "q"}}]}]}'
    assert problems_of(text) == [
        "rules.json:3: watchers[0].rules[0].todo.qeue: unknown key; did you mean 'queue'?"
    ]


def test_seed_era_on_done_is_shown_as_on_done() -> None:
    text = (
        '{"watchers": [{"input_queue": "in", "rules": [{"on": {\n"done": "(x"},\n'
        '"todo": {"queue": "q"}}]}]}'
    )
    [problem] = problems_of(text)
    assert problem.startswith("rules.json:2: watchers[0].rules[0].on.done: invalid regex '(x'")


def test_todo_and_make_in_one_rule_are_refused() -> None:
    data = {"watchers": [{"input_queue": "in", "rules": [{"on": "x", "todo": {}, "make": {}}]}]}
    assert problems_of_data(data) == [
        "rules: watchers[0].rules[0]: give 'make' or the seed-era 'todo', not both"
    ]


def test_an_empty_make_list_is_refused() -> None:
    [problem] = problems_of_data(one_rule([]))  # type: ignore[arg-type]
    assert problem.startswith("rules: watchers[0].rules[0].make: Tuple should have at least 1")


def test_a_problem_inside_a_make_entry_does_not_also_report_the_list_as_too_short() -> None:
    assert problems_of_data(one_rule({"task": "t"})) == [
        "rules: watchers[0].rules[0].make[0]: a raw make entry needs 'queue'"
        " (or 'actor' for Dramatiq)"
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [("args", []), ("kwargs", {}), ("delay_ms", 10), ("options", {}), ("release", "done")],
)
def test_dramatiq_only_keys_are_refused_on_a_raw_target(key: str, value: Any) -> None:
    assert problems_of_data(one_rule({"queue": "q", key: value})) == [
        f"rules: watchers[0].rules[0].make[0]: {key} only apply to an 'actor' target"
    ]


@pytest.mark.parametrize("option", ["redis_message_id", "resc", "eta"])
def test_options_the_router_sets_are_refused(option: str) -> None:
    [problem] = problems_of_data(one_rule({"actor": "a", "options": {option: 1}}))
    assert problem.startswith(
        f"rules: watchers[0].rules[0].make[0].options: {option!r} is reserved"
    )


def test_eta_option_points_to_delay_ms() -> None:
    [problem] = problems_of_data(one_rule({"actor": "a", "options": {"eta": 1}}))
    assert problem.endswith("'eta' is reserved: use delay_ms")


@pytest.mark.parametrize("value", [float("nan"), {1, 2}, b"bytes"])
def test_values_json_cannot_carry_are_refused_in_kwargs(value: Any) -> None:
    [problem] = problems_of_data(one_rule({"actor": "a", "kwargs": {"v": value}}))
    assert "make[0].kwargs: only JSON values can go in a message" in problem


def test_a_toml_date_in_args_is_refused() -> None:
    text = '[[watchers]]\ninput_queue = "in"\n[[watchers.rules]]\non = "x"\n'
    text += '[watchers.rules.make]\nactor = "a"\nargs = [1979-05-27]\n'
    [problem] = problems_of(text, fmt="toml", source="rules.toml")
    assert problem.startswith("rules.toml: watchers[0].rules[0].make[0].args: only JSON values")


@pytest.mark.parametrize("queue", ["trt/todo", "1st", "with space", "é"])
def test_an_actor_queue_dramatiq_cannot_consume_is_refused(queue: str) -> None:
    [problem] = problems_of_data(one_rule({"actor": "a", "queue": queue}))
    assert problem.startswith(
        f"rules: watchers[0].rules[0].make[0].queue: {queue!r} is no Dramatiq"
    )


@pytest.mark.parametrize("queue", ["default", "_q", "trt.todo-2", "q_${x}"])
def test_dramatiq_queue_names_and_templated_ones_are_accepted(queue: str) -> None:
    RuleSet.compile(Config.from_data(one_rule({"actor": "a", "queue": queue})))


def test_a_raw_list_may_have_any_name() -> None:
    RuleSet.compile(Config.from_data(one_rule({"queue": "trt/${x}/todo list"})))


def test_unknown_variable_deep_in_kwargs_is_located() -> None:
    make = {"actor": "a", "kwargs": {"meta": {"ids": ["${x}", "${y}"]}}}
    [problem] = problems_of_data(one_rule(make))
    assert problem.startswith("rules: watchers[0].rules[0].make[0].kwargs.meta.ids[1]: unknown")


def test_unknown_variable_in_args_names_its_index() -> None:
    [problem] = problems_of_data(one_rule({"actor": "a", "args": [1, "${y}"]}))
    assert problem.startswith("rules: watchers[0].rules[0].make[0].args[1]: unknown variable")


def test_unknown_variable_in_a_fetch_url_is_refused() -> None:
    data = one_rule({"queue": "q"})
    data["watchers"][0]["rules"][0]["fetch"] = [{"url": "http://x/${nope}", "returns": "r"}]
    [problem] = problems_of_data(data)
    assert problem.startswith("rules: watchers[0].rules[0].fetch[0].url: unknown variable ${nope}")


def test_fetched_fields_are_known_variables_of_the_make_entries() -> None:
    data = one_rule({"task": "${child.id}", "queue": "q"})
    data["watchers"][0]["rules"][0]["fetch"] = [{"url": "http://x/${x}", "returns": "child"}]
    RuleSet.compile(Config.from_data(data))


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("a{1001}", "invalid repetition size: {1001}"),
        ("(" * 2000 + "x" + ")" * 2000 + "{1000}", "pattern too large - compile failed"),
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"a(?!b)", "invalid perl operator: (?!"),
    ],
)
def test_regexes_re2_cannot_run_are_refused_not_crashed_on(pattern: str, why: str) -> None:
    [problem] = problems_of_data(one_rule({"queue": "q"}, on=pattern))
    assert problem.startswith("rules: watchers[0].rules[0].on: invalid regex")
    assert problem.endswith(why) or why in problem


def test_a_document_nested_too_deeply_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^rules.json: the document nests too deeply$"):
        Config.from_text("[" * 100_000, source="rules.json")


def test_a_yaml_alias_that_contains_itself_is_refused() -> None:
    text = "watchers: &w\n  - input_queue: in\n    rules: *w\n"
    with pytest.raises(ConfigError, match=r"^rules\.yaml: the document nests too deeply$"):
        Config.from_text(text, fmt="yaml", source="rules.yaml")


def test_a_yaml_alias_bomb_is_refused_at_once_naming_its_line() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for before, name in zip("abcdefghijk", "bcdefghijkl", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{before}"] * 9) + "]")
    text = "\n".join(lines) + "\n"  # 9**12 values once expanded
    assert len(text) < 600
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        Config.from_text(text, fmt="yaml", source="rules.yaml")
    assert time.perf_counter() - started < 0.5
    assert str(caught.value) == (
        "rules.yaml:6: invalid YAML: its aliases expand to more than 100,000 values"
    )


def test_yaml_aliases_that_expand_within_the_limit_load() -> None:
    text = "watchers:\n  - input_queue: in\n    rules:\n"
    text += "      - {on: '^x$', make: &m {queue: q}}\n"
    text += "".join(f"      - {{on: '^{i}$', make: *m}}\n" for i in range(100))
    assert len(Config.from_text(text, fmt="yaml").spec.watchers[0].rules) == 101


def test_yaml_control_characters_are_a_located_syntax_error() -> None:
    with pytest.raises(ConfigError, match=r"^rules.yaml:2: invalid YAML: unacceptable character"):
        Config.from_text("watchers:\n  - input_queue: \x07\n", fmt="yaml", source="rules.yaml")


def test_toml_syntax_errors_give_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^rules.toml:2: invalid TOML: Invalid value"):
        Config.from_text("[[watchers]]\ninput_queue = in\n", fmt="toml", source="rules.toml")


@pytest.mark.parametrize("text", ["[]", '"watchers"', "null"])
def test_the_top_level_must_be_an_object(text: str) -> None:
    with pytest.raises(ConfigError, match="the top level must be an object with 'watchers'"):
        Config.from_text(text, source="rules.json")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_bytes(b'{"watchers": "\xff"}')
    with pytest.raises(
        ConfigError, match=r"rules.json: not UTF-8 text: invalid start byte at byte 14"
    ):
        Config.load(path)


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.json: cannot read: No such file or directory"):
        Config.load(tmp_path / "nope.json")


def test_legacy_key_warnings_are_located() -> None:
    text = json.dumps(one_rule({"queue": "q", "task_set": "s"}), indent=1)
    config = Config.from_text(text, source="rules.json")
    [warning] = config.warnings
    assert warning.startswith("rules.json:10: watchers[0].rules[0].make.task_set: legacy resc key")

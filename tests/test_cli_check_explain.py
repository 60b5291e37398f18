"""Specification of ``resc-dramatiq check`` and ``resc-dramatiq explain`` (no Redis needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from resc_dramatiq.cli import main

EXAMPLES = Path(__file__).parent.parent / "example_project"
DEMO = EXAMPLES / "demo.conf.json"
CONFIGS = Path(__file__).parent / "configs"
BROKEN = CONFIGS / "broken"
MISSING = "missing.json"  # deliberately absent from the corpus

#: For each broken config, what follows ``error: <file>`` in the message: the line (JSON,
#: YAML, TOML, Hjson syntax), then the path inside the file, then what is wrong.
BROKEN_MESSAGES = {
    "actor_queue_name.json": ":8: watchers[0].rules[0].make[0].queue: 'trt/todo' is no Dramatiq"
    " queue name",
    "bad_regex.json": ":8: watchers[0].rules[0].on: invalid regex '^acq/(?P<id>\\\\d+$' in"
    " rule 'unclosed group': missing ): ^acq/(?P<id>\\d+$",
    "bad_release.json": ":6: watchers[0].rules[0].make[0].release: Input should be 'taken',"
    " 'done' or 'never'",
    "control_character.yaml": ":4: invalid YAML: unacceptable character #x0007",
    "dramatiq_key_on_raw.json": ":6: watchers[0].rules[0].make[1]: delay_ms only apply to an"
    " 'actor' target",
    "empty_watchers.json": ":2: watchers: Tuple should have at least 1 item",
    "invalid_hjson.hjson": ":5: invalid Hjson: Found ']' where a key name was expected",
    "invalid_json.json": ":3: invalid JSON: Expecting property name enclosed in double quotes"
    " (column 26)",
    "invalid_toml.toml": ":3: invalid TOML: Invalid value (column 16)",
    "invalid_yaml.yml": ":3: invalid YAML: expected <block end>",
    "make_without_queue.json": ":8: watchers[0].rules[0].make[0]: a raw make entry needs 'queue'"
    " (or 'actor' for Dramatiq)",
    "non_json_kwargs.yaml": ":7: watchers[0].rules[0].make[0].kwargs: only JSON values can go in"
    " a message: Object of type date is not JSON serializable",
    "regex_repeat_too_large.yaml": ":4: watchers[0].rules[0].on: invalid regex '^a{4294967296}$'"
    " in rule '<anonymous rule>': invalid repetition size: {4294967296}",
    "regex_lookahead.yaml": ":5: watchers[0].rules[0].on: invalid regex"
    " '^acq/(?=\\\\d)(?P<id>\\\\w+)$' in rule 'lookahead': invalid perl operator: (?=",
    "reserved_option.yaml": ":7: watchers[0].rules[0].make[0].options: 'eta' is reserved:"
    " use delay_ms",
    "schedule_bad_cron.yaml": ":5: schedules[0].cron: invalid cron expression '61 2 * * *':"
    " Bad minute",
    "schedule_cron_and_every.toml": ": schedules[0]: give either 'cron' or 'every_s'",
    "schedule_typo_key.json": ":7: schedules[0].catchup: unknown key; did you mean 'catch_up'?",
    "schedule_unknown_timezone.json": ":7: schedules[0].timezone: unknown timezone 'Europe/Pariss'",
    "schedule_unknown_variable.hjson": ": schedules[0].event: unknown variable ${day}; available:"
    " epoch, iso, date, time, hour, minute, name",
    "todo_and_make.json": ":6: watchers[0].rules[0]: give 'make' or the seed-era 'todo', not both",
    "typo_key.json": ":9: watchers[0].rules[0].make[0].qeue: unknown key; did you mean 'queue'?",
    "typo_top_level.json": ":2: listner_channel: unknown key; did you mean 'listener_channel'?",
    "unquoted_string_in_one_line_object.hjson": ":8: invalid Hjson: the unquoted string"
    " 'trt/${process_id}/${product_id}, queue: trt/todo, set: trt/set, ttl_s: 86400 }' runs to"
    " the end of the line (its ',', '}' and ']' included): quote it, or give it a line of its"
    " own (the parser stopped at line 10: Found ']' where a key name was expected",
    "unknown_extension.ini": ": unknown config format '.ini'; use .json, .hjson, .yaml, .yml"
    " or .toml",
    "unknown_variable_kwargs.toml": ": watchers[0].rules[0].make[0].kwargs.product: unknown"
    " variable ${product}; available: input_task, x",
    "unknown_variable_nested_kwargs.json": ":10: watchers[0].rules[0].make[0].kwargs.meta.ids[1]:"
    " unknown variable ${y}",
    "unknown_variable_queue.yaml": ":8: watchers[0].rules[0].make[0].queue: unknown variable ${y};"
    " available: input_task, x",
    "unknown_variable_seed_todo.json": ":13: watchers[0].rules[0].todo.set: unknown variable"
    " ${product} (did you mean 'product_id'?)",
    "unknown_variable_set.hjson": ": watchers[0].rules[0].make[0].set: unknown variable ${nope}",
    "unknown_variable_task.json": ":12: watchers[0].rules[1].make[0].task: unknown variable"
    " ${prodct_id} (did you mean 'product_id'?); available: input_task, process_id, product_id",
    "wrong_type.json": ":5: watchers[0].max_attempts: Input should be a valid integer",
    "wrong_type_on.yaml": ":5: watchers[0].rules[0].on: Input should be a valid string",
    MISSING: ": cannot read: No such file or directory",
}


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


# --- explain ----------------------------------------------------------------------------


def test_explain_shows_the_seed_demo_task_its_list_and_its_set() -> None:
    result = run("explain", DEMO, "acq/123/456")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "event 'acq/123/456'",
        "  rule 'TRT computation on data acquisition' (watcher 'global/done')",
        "    process_id = '123'",
        "    product_id = '456'",
        "    input_task = 'acq/123/456'",
        "    -> task 'trt/123/456' to list 'trt/123/todo' (dedup set 'products/456/todo')",
    ]


def test_explain_json_gives_the_seed_demo_task_as_data() -> None:
    result = run("explain", "--json", DEMO, "acq/123/456")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {
            "event": "acq/123/456",
            "matches": [
                {
                    "watcher": "global/done",
                    "rule": "TRT computation on data acquisition",
                    "variables": {
                        "process_id": "123",
                        "product_id": "456",
                        "input_task": "acq/123/456",
                    },
                    "tasks": [
                        {
                            "task": "trt/123/456",
                            "set": "products/456/todo",
                            "target": {"kind": "list", "queue": "trt/123/todo"},
                        }
                    ],
                }
            ],
        }
    ]


def test_explain_says_when_an_event_matches_no_rule() -> None:
    result = run("explain", DEMO, "acq/123")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["event 'acq/123'", "  matches no rule"]


def test_explain_json_of_an_unmatched_event_has_no_matches() -> None:
    result = run("explain", "--json", DEMO, "nothing")
    assert json.loads(result.stdout) == [{"event": "nothing", "matches": []}]


def test_explain_reports_each_event_in_order() -> None:
    result = run("explain", "--json", DEMO, "acq/1/2", "other", "acq/3/4")
    assert [r["event"] for r in json.loads(result.stdout)] == ["acq/1/2", "other", "acq/3/4"]


def test_explain_shows_every_task_of_every_matching_rule() -> None:
    result = run("explain", "--json", CONFIGS / "resc03" / "pipeline.hjson", "acq/12/34")
    [report] = json.loads(result.stdout)
    assert [(m["rule"], [t["task"] for t in m["tasks"]]) for m in report["matches"]] == [
        ("<anonymous rule>", ["trt/12/34"]),
        ("archive and index every acquisition", ["acq/12/34", "index/12"]),
    ]


def test_explain_shows_an_actor_target_with_its_arguments(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "watchers:\n- input_queue: in\n  rules:\n  - on: ^acq/(?P<p>\\d+)$\n"
        "    make: {actor: treat, queue: work, args: ['${p}'], kwargs: {n: 1}, delay_ms: 500}\n"
    )
    result = run("explain", path, "acq/7")
    assert result.exit_code == 0
    assert (
        "    -> task 'acq/7' to actor 'treat' on queue 'work' args=['7'] kwargs={'n': 1}"
        " after 500 ms (no dedup set)"
    ) in result.stdout.splitlines()


def test_explain_shows_a_rule_that_fails_for_this_event_instead_of_crashing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        '{"watchers": [{"input_queue": "in", "rules": [{"on": "^a(?P<o>b)?$",'
        ' "make": {"task": "t/${o}", "queue": "q"}}]}]}'
    )
    result = run("explain", path, "a")
    assert result.exit_code == 0
    assert (
        "    error: variable 'o' has no value for this event (the router would dead-letter"
        " the event)"
    ) in result.stdout.splitlines()
    [report] = json.loads(run("explain", "--json", path, "a").stdout)
    assert report["matches"][0]["error"] == "variable 'o' has no value for this event"


def test_explain_needs_an_event() -> None:
    result = run("explain", DEMO)
    assert result.exit_code == 2
    assert result.stderr == "error: give at least one EVENT\n"


def test_explain_refuses_a_broken_config_like_check() -> None:
    result = run("explain", BROKEN / "typo_key.json", "x")
    assert result.exit_code == 2
    assert "did you mean 'queue'?" in result.stderr


# --- check ------------------------------------------------------------------------------


def test_the_broken_corpus_has_an_expected_message_for_every_file() -> None:
    files = sorted(p.name for p in BROKEN.iterdir())
    assert files == sorted(set(BROKEN_MESSAGES) - {MISSING})
    assert len(files) >= 12


@pytest.mark.parametrize("name", sorted(BROKEN_MESSAGES))
def test_check_refuses_a_broken_config_with_its_file_path_and_line(name: str) -> None:
    path = BROKEN / name
    result = run("check", path)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert f"error: {path}{BROKEN_MESSAGES[name]}" in result.stderr


def test_check_warns_about_legacy_resc_keys_and_accepts_the_config(tmp_path: Path) -> None:
    path = tmp_path / "legacy.json"
    path.write_text(
        '{"task_set": "global/todo",\n"watchers": [{"input_queue": "in", "rules": [{"on": "x",\n'
        '"make": {"queue": "q",\n"task_set": "s"}}]}]}'
    )
    result = run("check", path)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"warning: {path}:1: task_set: legacy resc key ignored; use 'set'",
        f"warning: {path}:4: watchers[0].rules[0].make.task_set: legacy resc key ignored;"
        " use 'set'",
    ]
    assert result.stdout.startswith(f"{path}: valid\n")


def test_check_summarizes_the_seed_demo_config() -> None:
    result = run("check", DEMO)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"{DEMO}: valid",
        "watcher 'global/done' (taken 'global/taken', dead 'global/done/dead')",
        "  rule 'TRT computation on data acquisition'"
        r" on /^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$/",
        "    trt/${process_id}/${product_id} -> list trt/${process_id}/todo,"
        " set products/${product_id}/todo",
    ]


def test_check_summarizes_a_resc03_config_with_its_defaults() -> None:
    path = CONFIGS / "resc03" / "pipeline.hjson"
    result = run("check", path)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"{path}: valid",
        "watcher 'global/done' (taken 'global/done/taken', dead 'global/done/dead')",
        r"  rule '<anonymous rule>' on /^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$/",
        "    trt/${process_id}/${product_id} -> list trt/${process_id}/todo,"
        " set products/${product_id}/todo",
        r"  rule 'archive and index every acquisition' on /^acq/(?P<process_id>\d+)//",
        "    ${input_task} -> list archive",
        "    index/${process_id} -> list index, set index/todo",
    ]


def test_check_names_the_actor_of_an_actor_target(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[watchers]]\ninput_queue = "in"\n[[watchers.rules]]\non = "x"\n'
        '[watchers.rules.make]\nactor = "treat"\nqueue = "work"\n'
    )
    result = run("check", path)
    assert result.exit_code == 0
    assert "    ${input_task} -> actor treat work" in result.stdout.splitlines()

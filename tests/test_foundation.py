"""Specification of the foundation: resc layouts, validation, rule engine, check/explain."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import dramatiq
import pytest
from click.testing import CliRunner

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import ConfigError, RuleError
from resc_dramatiq.rules.messages import build_message
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import tasks_of

EXAMPLES = Path(__file__).parent.parent / "example_project"

RESC_03_HJSON = """\
# resc 0.3 style: comments, unquoted strings, defaults left out
{
  redis: { url: "redis://127.0.0.1:6379/0" }
  listener_channel: resc/events
  watchers: [
    {
      input_queue: global/done
      rules: [
        {
          // no name: "<anonymous rule>"
          on: ^acq/(?P<process_id>\\d+)/(?P<product_id>\\d+)$
          make: [
            {
              task: trt/${process_id}/${product_id}
              queue: trt/${process_id}/todo
              set: products/${product_id}/todo
            }
            {
              queue: archive
            }
          ]
        }
        {
          name: one make object
          on: ^acq/
          make: {
            task: log/${input_task}
            queue: log
          }
        }
      ]
    }
  ]
}
"""


def load(text: str, fmt: str = "json") -> RuleSet:
    return RuleSet.compile(Config.from_text(text, fmt=fmt))


def compute(ruleset: RuleSet, event: bytes | str) -> list[tuple[str, str, str | None]]:
    return [(t.task, t.queue, t.set) for t in tasks_of(ruleset.watchers[0], event)]


def test_seed_demo_config_makes_trt_task_on_its_queue_with_its_set() -> None:
    ruleset = RuleSet.compile(Config.load(EXAMPLES / "demo.conf.json"))
    assert compute(ruleset, "acq/123/456") == [("trt/123/456", "trt/123/todo", "products/456/todo")]
    assert ruleset.watchers[0].spec.taken_queue == "global/taken"


def test_resc_03_hjson_loads_with_its_defaults() -> None:
    ruleset = load(RESC_03_HJSON, "hjson")
    watcher = ruleset.watchers[0]
    assert watcher.spec.taken_queue == "global/done/taken"
    assert ruleset.config.spec.listener_channel == "resc/events"
    assert watcher.rules[0].name == "<anonymous rule>"
    assert compute(ruleset, "acq/1/2") == [
        ("trt/1/2", "trt/1/todo", "products/2/todo"),
        ("acq/1/2", "archive", None),
        ("log/acq/1/2", "log", None),
    ]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".toml", ".hjson"])
def test_every_format_loads_the_same_rules(tmp_path: Path, suffix: str) -> None:
    data = {
        "watchers": [
            {
                "input_queue": "in",
                "rules": [{"on": "^a/(?P<x>\\d+)$", "make": {"queue": "q/${x}", "set": "s"}}],
            }
        ]
    }
    path = tmp_path / f"c{suffix}"
    if suffix == ".toml":
        path.write_text(
            '[[watchers]]\ninput_queue = "in"\n[[watchers.rules]]\n'
            "on = '^a/(?P<x>\\d+)$'\n[watchers.rules.make]\nqueue = 'q/${x}'\nset = 's'\n"
        )
    else:
        path.write_text(json.dumps(data))  # JSON is valid YAML and Hjson
    assert compute(RuleSet.compile(Config.load(path)), "a/7") == [("a/7", "q/7", "s")]


def test_crlf_line_ends_and_byte_order_mark_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.hjson"
    path.write_bytes(b"\xef\xbb\xbf" + RESC_03_HJSON.replace("\n", "\r\n").encode())
    ruleset = RuleSet.compile(Config.load(path))
    assert compute(ruleset, "acq/1/2")[0] == ("trt/1/2", "trt/1/todo", "products/2/todo")


def test_yaml_on_key_stays_a_string_not_a_boolean() -> None:
    text = "watchers:\n- input_queue: in\n  rules:\n  - on: ^x$\n    make: {queue: q}\n"
    assert compute(load(text, "yaml"), "x") == [("x", "q", None)]


RULES = """{"watchers": [{"input_queue": "in", "rules": [
  {"name": "first", "on": "(?P<id>\\\\d+)", "make": {"task": "one/${id}", "queue": "q1"}},
  {"name": "second", "on": "^id=(?<id>\\\\d+)(?:/(?P<opt>\\\\w+))?",
   "make": {"task": "two/${id}", "queue": "q2"}},
  {"name": "third", "on": "^x(?<y>y)$", "make": {"queue": "q3"}}
]}]}"""


def test_every_matching_rule_runs_in_config_order_unanchored() -> None:
    assert compute(load(RULES), "id=42") == [("one/42", "q1", None), ("two/42", "q2", None)]


def test_rust_and_python_named_groups_both_work() -> None:
    ruleset = load(RULES)
    [match] = [m for m in ruleset.watchers[0].matches("id=5") if m.rule.name == "second"]
    assert match.variables == {"id": "5", "input_task": "id=5"}  # opt took no part
    assert compute(ruleset, "xy") == [("xy", "q3", None)]


def test_a_non_utf8_event_fails_with_its_first_bad_byte_instead_of_crashing() -> None:
    batch = Planner(load(RULES).watchers[0]).plan([b"id=9\xff\xfe"], now=0)
    assert [(f.event, f.error) for f in batch.failed] == [
        (b"id=9\xff\xfe", "event is not valid UTF-8 at byte 4")
    ]
    assert batch.tasks == []


def test_substituted_values_are_inserted_verbatim_in_one_pass() -> None:
    ruleset = load(
        '{"watchers": [{"input_queue": "in", "rules": [{"on": "^(?P<v>.*)$",'
        ' "make": {"task": "t/${v}", "queue": "q"}}]}]}'
    )
    hostile = "${input_task}{0.__class__}%s"
    assert compute(ruleset, hostile) == [(f"t/{hostile}", "q", None)]


def test_template_names_that_look_like_code_are_unknown_variables() -> None:
    with pytest.raises(ConfigError, match=r"unknown variable \$\{__import__\}"):
        load(
            '{"watchers": [{"input_queue": "in", "rules": [{"on": "x",'
            ' "make": {"task": "${__import__}", "queue": "q"}}]}]}'
        )


def test_optional_group_missing_at_run_time_is_a_rule_error() -> None:
    ruleset = load(
        '{"watchers": [{"input_queue": "in", "rules": [{"on": "^a(?P<o>b)?$",'
        ' "make": {"task": "t/${o}", "queue": "q"}}]}]}'
    )
    with pytest.raises(RuleError, match="'o' has no value"):
        tasks_of(ruleset.watchers[0], "a")


ACTOR = """{"watchers": [{"input_queue": "in", "rules": [{"on": "^acq/(?P<p>\\\\d+)/(?P<q>\\\\d+)$",
  "make": [{"actor": "treat", "queue": "work", "set": "s/${q}", "release": "done",
            "options": {"max_retries": 1}},
           {"actor": "later", "kwargs": {"product": "${q}", "n": 3}, "delay_ms": 1500}]}]}]}"""


def test_actor_target_builds_a_message_dramatiq_decodes() -> None:
    [task, _] = tasks_of(load(ACTOR).watchers[0], "acq/1/2")
    envelope = build_message(task, now_ms=1_000, done_queue="in")
    message = dramatiq.Message.decode(envelope.payload)
    assert set(json.loads(envelope.payload)) == {
        "queue_name", "actor_name", "args", "kwargs", "options", "message_id",
        "message_timestamp",
    }  # fmt: skip
    assert (message.queue_name, message.actor_name) == ("work", "treat")
    assert message.kwargs == {"p": "1", "q": "2"}
    assert message.options["max_retries"] == 1
    assert message.options["resc"] == {
        "task": "acq/1/2", "set": "s/2", "release": "done", "done": "in"
    }  # fmt: skip
    rid = message.options["redis_message_id"]
    assert envelope.redis_message_id == rid != message.message_id
    assert uuid.UUID(rid).version == 4


def test_delayed_actor_target_goes_to_the_delay_queue_with_an_eta() -> None:
    [_, task] = tasks_of(load(ACTOR).watchers[0], "acq/1/2")
    envelope = build_message(task, now_ms=1_000, done_queue="in")
    message = dramatiq.Message.decode(envelope.payload)
    assert envelope.queue_name == message.queue_name == "default.DQ"
    assert message.options["eta"] == 2_500
    assert message.kwargs == {"product": "2", "n": 3}


def test_message_ids_are_unique() -> None:
    [task, _] = tasks_of(load(ACTOR).watchers[0], "acq/1/2")
    ids = set()
    for _ in range(2_000):
        message = dramatiq.Message.decode(build_message(task, now_ms=0, done_queue=None).payload)
        ids |= {message.message_id, message.options["redis_message_id"]}
    assert len(ids) == 4_000


def test_check_of_a_missing_file_exits_2() -> None:
    result = CliRunner().invoke(main, ["check", "no/such/rules.json"])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_legacy_resc_keys_only_warn(tmp_path: Path) -> None:
    path = tmp_path / "legacy.json"
    path.write_text(
        '{"watchers": [{"input_queue": "in", "rules": [{"on": "x",'
        ' "make": {"queue": "q", "task_set": "s"}}]}]}'
    )
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0
    assert "task_set: legacy resc key ignored; use 'set'" in result.stderr


def test_check_prints_a_summary_of_a_valid_config() -> None:
    result = CliRunner().invoke(main, ["check", str(EXAMPLES / "demo.conf.json")])
    assert result.exit_code == 0
    assert "watcher 'global/done'" in result.stdout
    assert "trt/${process_id}/${product_id} -> list trt/${process_id}/todo" in result.stdout


def test_explain_shows_rules_variables_and_tasks() -> None:
    result = CliRunner().invoke(
        main, ["explain", str(EXAMPLES / "demo.conf.json"), "acq/123/456", "other"]
    )
    assert result.exit_code == 0
    assert "product_id = '456'" in result.stdout
    assert (
        "-> task 'trt/123/456' to list 'trt/123/todo' (dedup set 'products/456/todo')"
        in result.stdout
    )
    assert "matches no rule" in result.stdout


def test_explain_json_is_machine_readable() -> None:
    result = CliRunner().invoke(
        main, ["explain", "--json", str(EXAMPLES / "demo.conf.json"), "acq/123/456"]
    )
    [report] = json.loads(result.stdout)
    [match] = report["matches"]
    assert match["tasks"] == [
        {
            "task": "trt/123/456",
            "set": "products/456/todo",
            "target": {"kind": "list", "queue": "trt/123/todo"},
        }
    ]

"""Specification: resc's config files load unchanged, in both layouts and every format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from resc_dramatiq.config.makes import INPUT_TASK
from resc_dramatiq.config.model import ANONYMOUS_RULE, Config
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import tasks_of

EXAMPLES = Path(__file__).parent.parent / "example_project"
RESC03 = Path(__file__).parent / "configs" / "resc03"
HJSON = RESC03 / "pipeline.hjson"
FORMATS = ["pipeline.hjson", "pipeline.json", "pipeline.yaml", "pipeline.toml"]

#: What the resc 0.3 pipeline makes of ``acq/12/34``, in every format.
ACQ_12_34 = [
    ("trt/12/34", "trt/12/todo", "products/34/todo"),
    ("acq/12/34", "archive", None),
    ("index/12", "index", "index/todo"),
]


def tasks(config: Config, event: str) -> list[tuple[str, str, str | None]]:
    ruleset = RuleSet.compile(config)
    return [(t.task, t.queue, t.set) for w in ruleset.watchers for t in tasks_of(w, event)]


# --- seed-era layout -------------------------------------------------------------------


def test_seed_demo_config_is_tab_indented_seed_era_layout() -> None:
    text = (EXAMPLES / "demo.conf.json").read_text()
    assert "\t" in text
    assert '"done"' in text
    assert '"todo"' in text


def test_seed_era_on_done_is_the_regex_and_todo_is_the_only_make_entry() -> None:
    config = Config.load(EXAMPLES / "demo.conf.json")
    [rule] = config.spec.watchers[0].rules
    assert rule.on == r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$"
    assert [(m.task, m.queue, m.set) for m in rule.make] == [
        ("trt/${process_id}/${product_id}", "trt/${process_id}/todo", "products/${product_id}/todo")
    ]


def test_seed_era_redis_url_and_taken_queue_are_per_watcher() -> None:
    config = Config.load(EXAMPLES / "demo.conf.json")
    watcher = config.spec.watchers[0]
    assert config.redis_url(watcher) == "redis://127.0.0.1/"
    assert (watcher.input_queue, watcher.taken_queue) == ("global/done", "global/taken")


# --- resc 0.3.x layout -----------------------------------------------------------------


def test_resc03_hjson_with_comments_and_unquoted_strings_loads() -> None:
    config = Config.load(HJSON)
    assert config.spec.watchers[0].rules[0].on == r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$"
    assert config.spec.watchers[0].rules[1].name == "archive and index every acquisition"


def test_resc03_unquoted_url_keeps_its_double_slash() -> None:
    config = Config.load(HJSON)
    assert config.spec.redis is not None
    assert config.spec.redis.url == "redis://127.0.0.1:6379/0"


def test_resc03_top_level_redis_url_applies_to_every_watcher() -> None:
    config = Config.load(HJSON)
    assert config.spec.watchers[0].redis is None
    assert config.redis_url(config.spec.watchers[0]) == "redis://127.0.0.1:6379/0"


def test_resc03_listener_channel_is_read() -> None:
    assert Config.load(HJSON).spec.listener_channel == "resc/events"


def test_taken_queue_defaults_to_input_queue_slash_taken() -> None:
    assert Config.load(HJSON).spec.watchers[0].taken_queue == "global/done/taken"


def test_rule_name_defaults_to_anonymous_rule() -> None:
    assert Config.load(HJSON).spec.watchers[0].rules[0].name == ANONYMOUS_RULE == "<anonymous rule>"


def test_make_as_one_object_is_a_single_entry() -> None:
    assert len(Config.load(HJSON).spec.watchers[0].rules[0].make) == 1


def test_make_as_a_list_keeps_every_entry_in_order() -> None:
    make = Config.load(HJSON).spec.watchers[0].rules[1].make
    assert [m.queue for m in make] == ["archive", "index"]


def test_task_defaults_to_the_input_task() -> None:
    archive = Config.load(HJSON).spec.watchers[0].rules[1].make[0]
    assert archive.task == INPUT_TASK == "${input_task}"


def test_no_set_means_no_dedup() -> None:
    archive = Config.load(HJSON).spec.watchers[0].rules[1].make[0]
    assert archive.set is None


def test_resc03_pipeline_makes_every_task_of_every_matching_rule() -> None:
    assert tasks(Config.load(HJSON), "acq/12/34") == ACQ_12_34


# --- formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_loads_the_same_config(name: str) -> None:
    assert Config.load(RESC03 / name).spec == Config.load(HJSON).spec


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_makes_the_same_tasks(name: str) -> None:
    assert tasks(Config.load(RESC03 / name), "acq/12/34") == ACQ_12_34


def test_yml_extension_is_yaml(tmp_path: Path) -> None:
    path = shutil.copy(RESC03 / "pipeline.yaml", tmp_path / "pipeline.yml")
    assert Config.load(path).spec == Config.load(HJSON).spec


def test_conf_extension_is_json(tmp_path: Path) -> None:
    path = shutil.copy(RESC03 / "pipeline.json", tmp_path / "pipeline.conf")
    assert Config.load(path).spec == Config.load(HJSON).spec


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = shutil.copy(RESC03 / "pipeline.yaml", tmp_path / "PIPELINE.YAML")
    assert Config.load(path).spec == Config.load(HJSON).spec


def test_yaml_boolean_words_stay_strings() -> None:
    text = "watchers:\n- input_queue: no\n  rules:\n  - on: yes\n    make: {queue: off}\n"
    watcher = Config.from_text(text, fmt="yaml").spec.watchers[0]
    assert (watcher.input_queue, watcher.rules[0].on, watcher.rules[0].make[0].queue) == (
        "no",
        "yes",
        "off",
    )


@pytest.mark.parametrize("name", FORMATS)
def test_crlf_line_ends_are_accepted(tmp_path: Path, name: str) -> None:
    text = (RESC03 / name).read_bytes().replace(b"\n", b"\r\n")
    path = tmp_path / name
    path.write_bytes(text)
    assert Config.load(path).spec == Config.load(HJSON).spec


@pytest.mark.parametrize("name", FORMATS)
def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + (RESC03 / name).read_bytes())
    assert Config.load(path).spec == Config.load(HJSON).spec


def test_seed_demo_config_with_crlf_and_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "demo.conf.json"
    raw = (EXAMPLES / "demo.conf.json").read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"))
    assert Config.load(path).spec == Config.load(EXAMPLES / "demo.conf.json").spec


def test_old_resc_top_level_task_set_is_ignored_with_a_warning() -> None:
    text = '{"task_set": "global/todo", "watchers": [{"input_queue": "in"}]}'
    config = Config.from_text(text, source="old.json")
    assert config.warnings == ("old.json:1: task_set: legacy resc key ignored; use 'set'",)


def test_a_legacy_key_name_inside_kwargs_is_an_ordinary_argument() -> None:
    text = (
        '{"watchers": [{"input_queue": "in", "rules": [{"on": "x",'
        ' "make": {"actor": "a", "kwargs": {"task_set": "s", "redis_url": "u"}}}]}]}'
    )
    config = Config.from_text(text)
    assert config.warnings == ()
    assert config.spec.watchers[0].rules[0].make[0].kwargs == {"task_set": "s", "redis_url": "u"}

"""Hash slots of keys and key templates, and the layouts a Redis Cluster can serve (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from resc_dramatiq import Config, RuleSet
from resc_dramatiq.cli import main
from resc_dramatiq.rules.templates import Template
from resc_dramatiq.store.slots import cluster_problems, done_list_problems, key_slot, slot_of

CLUSTER_URL = "redis+cluster://127.0.0.1:7000"


def rules(input_queue: str, *makes: dict[str, Any], namespace: str = "dramatiq") -> RuleSet:
    rule = {"name": "r", "on": "^(?P<p>.*)$", "make": list(makes)}
    watcher = {"input_queue": input_queue, "rules": [rule]}
    return RuleSet.compile(Config.from_data({"namespace": namespace, "watchers": [watcher]}))


def write_rules(tmp_path: Path, input_queue: str, queue: str) -> Path:
    rule = {"on": "x", "make": {"queue": queue}}
    config = tmp_path / "rules.json"
    config.write_text(json.dumps({"watchers": [{"input_queue": input_queue, "rules": [rule]}]}))
    return config


def test_a_key_slot_is_that_of_its_hash_tag() -> None:
    assert key_slot("{g}/done") == key_slot("g") == key_slot("x{g}y")
    assert key_slot("{}g") != key_slot("g")  # an empty tag hashes the whole key


def test_a_constant_template_or_a_literal_tag_names_one_fixed_slot() -> None:
    assert slot_of(Template.compile("a/b")).fixed == key_slot("a/b")
    assert slot_of(Template.compile("{g}/${x}/todo")).fixed == key_slot("g")


def test_templates_with_the_same_variable_tag_always_share_a_slot() -> None:
    todo, queue = (
        slot_of(Template.compile("{p${id}}/todo")),
        slot_of(Template.compile("{p${id}}/q")),
    )
    assert todo.fixed is None and todo.always_with(queue)
    assert not todo.always_with(slot_of(Template.compile("{q${id}}/todo")))


def test_a_template_without_a_literal_tag_falls_in_a_slot_the_event_decides() -> None:
    anywhere = slot_of(Template.compile("trt/${id}/todo"))
    assert anywhere.fixed is None and anywhere.prefix is None
    assert not anywhere.always_with(anywhere)


@given(value=st.text(max_size=12))
def test_keys_filled_from_templates_sharing_a_tag_prefix_share_their_slot(value: str) -> None:
    a, b = Template.compile("{p${id}}/todo"), Template.compile("{p${id}}/queue/${id}")
    assert key_slot(a.render({"id": value})) == key_slot(b.render({"id": value}))


def test_a_watcher_named_with_a_hash_tag_and_tasks_in_its_slot_are_served() -> None:
    ruleset = rules("{g}/done", {"task": "t/${p}", "queue": "{g}/todo", "set": "{g}/set"})
    assert cluster_problems(ruleset, "dramatiq") == []


def test_a_watcher_without_a_hash_tag_is_refused_with_the_tag_to_use() -> None:
    [problem] = cluster_problems(rules("global/done", {"queue": "{global/done}/x"}), "dramatiq")
    assert "watcher 'global/done'" in problem and "'{global/done}'" in problem


def test_a_dedup_set_that_may_fall_elsewhere_than_its_list_is_refused() -> None:
    [problem] = cluster_problems(
        rules("{g}/in", {"queue": "{g}/todo", "set": "s/${p}"}), "dramatiq"
    )
    assert "dedup set 's/${p}'" in problem and "same hash tag" in problem
    assert "{t${input_task}}" in problem


def test_a_dramatiq_target_needs_a_namespace_with_a_hash_tag() -> None:
    make = {"actor": "work", "queue": "work"}
    [problem] = cluster_problems(rules("{g}/in", make), "dramatiq")
    assert "'{dramatiq}'" in problem
    assert cluster_problems(rules("{g}/in", make, namespace="{g}"), "{g}") == []


@pytest.mark.parametrize("queue", ["{other}/todo", "t/${p}"])
def test_tasks_in_other_slots_than_the_watchers_are_served_through_the_outbox(
    queue: str,
) -> None:
    assert cluster_problems(rules("{g}/in", {"queue": queue}), "dramatiq") == []


@pytest.mark.parametrize("tag", ["{${p}}", "${p}{t}", "{}${p}"])
def test_a_tag_an_event_could_move_or_empty_does_not_count(tag: str) -> None:
    assert not slot_of(Template.compile(tag + "/todo")).always_with(
        slot_of(Template.compile(tag + "/queue"))
    )


def test_check_refuses_a_cluster_layout_it_cannot_serve_and_exits_2(tmp_path: Path) -> None:
    config = write_rules(tmp_path, "in", "out")
    result = CliRunner().invoke(main, ["check", str(config), "--redis-url", CLUSTER_URL])
    assert result.exit_code == 2
    assert "a Redis Cluster cannot serve these rules" in result.stderr
    assert "'{in}'" in result.stderr
    plain = CliRunner().invoke(main, ["check", str(config), "--redis-url", "redis://h:1/0"])
    assert plain.exit_code == 0, plain.output


def test_check_names_each_watchers_slot_on_a_cluster(tmp_path: Path) -> None:
    config = write_rules(tmp_path, "{g}/in", "{g}/out")
    result = CliRunner().invoke(main, ["check", str(config), "--redis-url", CLUSTER_URL])
    assert result.exit_code == 0, result.output
    assert f"cluster slot {key_slot('g')}" in result.stdout
    assert f"keys in slot {key_slot('g')}, the watcher's: with the commit" in result.stdout


def test_check_says_which_tasks_go_through_the_outbox(tmp_path: Path) -> None:
    config = write_rules(tmp_path, "{g}/in", "t/${input_task}")
    result = CliRunner().invoke(main, ["check", str(config), "--redis-url", CLUSTER_URL])
    assert result.exit_code == 0, result.output
    assert "keys in a slot per task: through the outbox" in result.stdout


def test_a_schedule_on_a_cluster_needs_a_target_with_a_hash_tag() -> None:
    schedule = {"name": "clock", "every_s": 1, "event": "t/${epoch}", "queue": "plain"}
    watcher = {"input_queue": "{g}/in", "rules": [{"on": "x", "make": {"queue": "{g}/o"}}]}
    ruleset = RuleSet.compile(Config.from_data({"watchers": [watcher], "schedules": [schedule]}))
    [problem] = cluster_problems(ruleset, "dramatiq")
    assert "schedule 'clock'" in problem and "'{plain}'" in problem
    tagged = {"watchers": [watcher], "schedules": [{**schedule, "queue": "{g}/in"}]}
    assert cluster_problems(RuleSet.compile(Config.from_data(tagged)), "dramatiq") == []


@pytest.mark.parametrize("command", [["dead", "list"], ["status"], ["prune"], ["router"]])
def test_every_command_refuses_a_cluster_layout_it_cannot_serve_before_connecting(
    tmp_path: Path, command: list[str]
) -> None:
    config = write_rules(tmp_path, "in", "out")
    result = CliRunner().invoke(main, [*command, str(config), "--redis-url", CLUSTER_URL])
    assert result.exit_code == 2
    assert "a Redis Cluster cannot serve these rules" in result.stderr


def test_a_done_list_needs_a_hash_tag_to_share_its_slot_with_its_markers() -> None:
    lists = {"global/done": "Completion(done_queue=...)", "{g}/done": "a", "x/{g}/failed": "b"}
    [problem] = done_list_problems(lists)
    assert problem.startswith("Completion(done_queue=...): list 'global/done'")
    assert "'global/done/messages'" in problem and "name it '{global/done}'" in problem

"""Specification: schedules in every config format and in code, validated where they are."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import ConfigError
from resc_dramatiq.rules.schedules import compile_schedules
from resc_dramatiq.worker.app import build_ruleset, load_app
from resc_dramatiq.worker.registry import Registry, registry

TEXTS = {
    "json": """{"watchers": [{"input_queue": "global/done"}],
 "schedules": [{"name": "nightly export", "cron": "30 2 * * *", "timezone": "Europe/Paris",
                "event": "export/${date}"},
               {"name": "heartbeat", "every_s": 1, "event": "tick/${epoch}",
                "queue": "clock/done", "catch_up": "all"}]}""",
    "hjson": """{
  watchers: [
    {
      input_queue: global/done
    }
  ]
  schedules: [
    {
      name: nightly export
      cron: "30 2 * * *"
      timezone: Europe/Paris
      event: "export/${date}"
    }
    {
      name: heartbeat
      every_s: 1
      event: "tick/${epoch}"
      queue: clock/done
      catch_up: all
    }
  ]
}""",
    "yaml": """watchers:
  - input_queue: global/done
schedules:
  - {name: nightly export, cron: "30 2 * * *", timezone: Europe/Paris, event: "export/${date}"}
  - {name: heartbeat, every_s: 1, event: "tick/${epoch}", queue: clock/done, catch_up: all}
""",
    "toml": """[[watchers]]
input_queue = "global/done"

[[schedules]]
name = "nightly export"
cron = "30 2 * * *"
timezone = "Europe/Paris"
event = "export/${date}"

[[schedules]]
name = "heartbeat"
every_s = 1
event = "tick/${epoch}"
queue = "clock/done"
catch_up = "all"
""",
}


@pytest.mark.parametrize("fmt", sorted(TEXTS))
def test_schedules_load_from_every_format(fmt: str) -> None:
    config = Config.from_text(TEXTS[fmt], fmt=fmt)
    nightly, heartbeat = compile_schedules(config)
    assert (nightly.name, nightly.spec.cron, nightly.spec.timezone) == (
        "nightly export",
        "30 2 * * *",
        "Europe/Paris",
    )
    assert (heartbeat.spec.every_s, heartbeat.queue, heartbeat.spec.catch_up) == (
        1,
        "clock/done",
        "all",
    )


def test_a_schedule_without_queue_feeds_the_first_watcher_and_catches_up_nothing() -> None:
    [schedule] = compile_schedules(
        Config.from_data(
            {
                "watchers": [{"input_queue": "a"}, {"input_queue": "b"}],
                "schedules": [{"name": "x", "every_s": 5}],
            }
        )
    )
    assert (schedule.queue, schedule.owner, schedule.spec.catch_up) == ("a", "a", "none")
    assert schedule.spec.timezone == "UTC"
    assert schedule.render(1000) == "x/1000"


def problems(schedule: dict[str, Any]) -> list[str]:
    data = {"watchers": [{"input_queue": "in"}], "schedules": [schedule]}
    with pytest.raises(ConfigError) as caught:
        compile_schedules(Config.from_data(data, source="rules"))
    return caught.value.problems


def test_two_schedules_with_one_name_are_refused() -> None:
    data = {
        "watchers": [{"input_queue": "in"}],
        "schedules": [{"name": "x", "every_s": 1}, {"name": "x", "every_s": 2}],
    }
    with pytest.raises(ConfigError, match="two schedules are named 'x'"):
        Config.from_data(data, source="rules")


def test_a_cron_expression_of_four_fields_is_refused() -> None:
    assert problems({"name": "x", "cron": "* * * *"}) == [
        "rules: schedules[0].cron: invalid cron expression '* * * *': 5 fields (minute hour day"
        " month weekday) or 6 (then seconds)"
    ]


def test_an_unknown_variable_in_actor_kwargs_is_refused() -> None:
    [problem] = problems({"name": "x", "every_s": 1, "actor": "a", "kwargs": {"d": "${day}"}})
    assert "schedules[0].kwargs: unknown variable ${day}" in problem


def test_kwargs_without_an_actor_are_refused() -> None:
    assert problems({"name": "x", "every_s": 1, "kwargs": {}}) == [
        "rules: schedules[0]: 'kwargs' only applies to an 'actor' target"
    ]


def test_a_zero_interval_is_refused() -> None:
    [problem] = problems({"name": "x", "every_s": 0})
    assert problem.startswith("rules: schedules[0].every_s: Input should be greater than")


def test_check_exits_2_on_a_bad_schedule_and_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        '{"watchers": [{"input_queue": "in"}],\n"schedules": [{"name": "x",\n'
        '"cron": "* * * * * 99"}]}'
    )
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    assert f"error: {path}:3: schedules[0].cron: invalid cron expression" in result.stderr


# --- @on_schedule -------------------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    b = StubBroker()
    yield b
    b.close()


def test_on_schedule_records_a_schedule_and_returns_the_actor_unchanged(broker: StubBroker) -> None:
    reg = Registry()

    @dramatiq.actor(broker=broker, queue_name="reports")
    def report() -> None:
        pass

    assert reg.on_schedule("*/5 * * * *", timezone="Europe/Paris")(report) is report
    [schedule] = reg.schedules
    assert schedule.spec["cron"] == "*/5 * * * *"
    assert schedule.spec["timezone"] == "Europe/Paris"
    assert schedule.actor_on(broker) is report


def test_on_schedule_refuses_a_bad_timezone_where_it_is_written(broker: StubBroker) -> None:
    reg = Registry()
    with pytest.raises(ConfigError, match="report: unknown timezone 'Paris'"):

        @reg.on_schedule("0 * * * *", timezone="Paris")
        @dramatiq.actor(broker=broker)
        def report() -> None:
            pass


APP = """
import dramatiq
from dramatiq.brokers.stub import StubBroker
from resc_dramatiq.worker.registry import Registry

broker = StubBroker()
schedules = Registry()

@schedules.on_schedule(every_s=60, kwargs={"at": "${iso}"})
@dramatiq.actor(broker=broker, queue_name="reports")
def report(at):
    pass
"""


@pytest.fixture
def app_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    yield name
    registry.clear()


def test_code_schedules_alone_make_a_ruleset_with_the_actors_queue(app_name: str) -> None:
    ruleset = build_ruleset(None, load_app(f"{app_name}:broker"))
    [schedule] = compile_schedules(ruleset.config)
    assert (schedule.name, schedule.actor, schedule.queue) == (
        "@on_schedule report",
        "report",
        "reports",
    )
    task = schedule.task(1800000000)
    assert task is not None
    assert task.make.target.kwargs is not None


def test_code_schedules_join_the_files_schedules(app_name: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps(
            {
                "watchers": [{"input_queue": "in"}],
                "schedules": [{"name": "file", "every_s": 10, "actor": "report"}],
            }
        )
    )
    ruleset = build_ruleset(Config.load(path), load_app(f"{app_name}:broker"))
    assert [(s.name, s.queue) for s in compile_schedules(ruleset.config)] == [
        ("file", "reports"),  # the actor's queue, from the app
        ("@on_schedule report", "reports"),
    ]


def test_a_file_schedule_of_an_unknown_actor_is_refused_with_the_app(
    app_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps(
            {
                "watchers": [{"input_queue": "in"}],
                "schedules": [{"name": "f", "every_s": 1, "actor": "reprt"}],
            }
        )
    )
    with pytest.raises(
        ConfigError, match=r"schedules\[0\].actor: unknown actor 'reprt' \(did you mean 'report'"
    ):
        build_ruleset(Config.load(path), load_app(f"{app_name}:broker"))

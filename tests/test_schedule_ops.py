"""Specification: a schedule's firings are observable in ``status``, metrics and ``explain``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.ops.metrics import RouterMetrics
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet

DONE = "global/done"
CONFIG: dict[str, Any] = {
    "watchers": [{"input_queue": DONE}],
    "schedules": [
        {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris", "event": "n/${date}"},
        {"name": "hourly", "every_s": 3600, "event": "h/${hour}"},
    ],
}


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    yield
    r.connection_pool.disconnect()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(CONFIG))
    return path


def redis_now(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def fire_hourly_now(r: redis.Redis, observer: RouterMetrics | None = None) -> int:
    """Fire the hourly schedule's current tick, on a clock just past it; return the tick."""
    tick = int(redis_now(r)) // 3600 * 3600
    ruleset = RuleSet.compile(Config.from_data(CONFIG))
    Router(ruleset=ruleset, client=r, clock=lambda: tick + 0.5, observer=observer).run_until_idle()
    return tick


def statuses(config: Path, redis_url: str) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(main, ["status", str(config), "--redis-url", redis_url, "--json"])
    assert result.exit_code == 0, result.output
    [watcher] = json.loads(result.stdout)
    return {s["name"]: s for s in watcher["schedules"]}


def test_status_gives_a_schedules_last_firing_its_lag_and_the_next_one(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    tick = fire_hourly_now(r)
    hourly = statuses(config, redis_url)["hourly"]
    assert hourly["last_tick"] == tick
    assert hourly["fired"] == 1
    assert hourly["next_tick"] == tick + 3600
    assert 0 < hourly["next_in_s"] <= 3600
    lag_s = time.time() - tick  # fired just now: its lag is the age of its tick
    assert abs(hourly["lag_s"] - lag_s) < 60
    assert hourly["last_fired_age_s"] < 60


def test_status_shows_a_schedule_never_fired_with_its_next_tick_in_its_timezone(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    nightly = statuses(config, redis_url)["nightly"]
    assert nightly["last_tick"] is None
    assert nightly["next_tick_local"].endswith(
        ("02:30:00+01:00", "02:30:00+02:00", "03:00:00+02:00")
    )


def test_the_status_table_lists_the_schedules(r: redis.Redis, redis_url: str, config: Path) -> None:
    fire_hourly_now(r)
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        main, ["status", str(config), "--redis-url", redis_url]
    )
    assert result.exit_code == 0, result.output
    for shown in ("schedules", "hourly", "every 3600 s (UTC)", "nightly", "never"):
        assert shown in result.stdout


def test_metrics_count_the_fired_ticks_and_observe_their_lag(r: redis.Redis) -> None:
    metrics = RouterMetrics(process=False)
    fire_hourly_now(r, metrics)
    assert (
        metrics.registry.get_sample_value("resc_schedule_ticks_fired_total", {"schedule": "hourly"})
        == 1
    )
    assert (
        metrics.registry.get_sample_value(
            "resc_schedule_lag_milliseconds_count", {"schedule": "hourly"}
        )
        == 1
    )


def test_metrics_show_a_schedule_at_zero_before_its_first_firing(r: redis.Redis) -> None:
    metrics = RouterMetrics(process=False)
    Router(ruleset=RuleSet.compile(Config.from_data(CONFIG)), client=r, observer=metrics)
    families = {
        f.name for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
    }
    assert "resc_schedule_ticks_fired" in families
    assert (
        metrics.registry.get_sample_value(
            "resc_schedule_ticks_fired_total", {"schedule": "nightly"}
        )
        == 0
    )


def explain(*args: str) -> Any:
    return CliRunner().invoke(main, ["explain", *args])


def test_explain_schedules_previews_the_spring_forward_night_without_redis(config: Path) -> None:
    result = explain(str(config), "--schedules", "--at", "2026-03-28T12:00Z", "--count", "2")
    assert result.exit_code == 0, result.output
    assert "2026-03-29T03:00:00+02:00" in result.stdout
    assert "'n/2026-03-29'" in result.stdout
    assert "2026-03-30T02:30:00+02:00" in result.stdout


def test_explain_schedules_json_gives_each_firing_tick_and_event(config: Path) -> None:
    result = explain(str(config), "--schedules", "--at", "1800000000", "--count", "3", "--json")
    assert result.exit_code == 0, result.output
    hourly = {e["schedule"]: e for e in json.loads(result.stdout)}["hourly"]
    assert [f["tick"] for f in hourly["firings"]] == [1800000000 + 3600 * i for i in (1, 2, 3)]
    assert hourly["firings"][0]["event"] == "h/09"
    assert hourly["target"] == {"kind": "list", "queue": DONE}


def test_explain_refuses_an_unreadable_at_time(config: Path) -> None:
    result = explain(str(config), "--schedules", "--at", "tomorrow")
    assert result.exit_code == 2
    assert "--at 'tomorrow'" in result.stderr

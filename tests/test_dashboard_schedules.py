"""The dashboard's Schedules page in a real browser (Debian's chromium, Playwright), the
real server (``resc-dramatiq dashboard`` as a subprocess) against the test's Redis.

The Redis state is made by really firing a schedule: a router's scheduler and
``fire.lua``, on an injected clock just past the tick. The page's figures are that
state's; its next firings are those ``explain --schedules`` prints.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner
from playwright.sync_api import Page, expect

from resc_dramatiq import Config, Router, RuleSet
from resc_dramatiq.cli import main
from resc_dramatiq.ops.schedule_status import read_state
from resc_dramatiq.rules.schedules import compile_schedules
from resc_dramatiq.store.keys import schedule_state
from tests.browser import shot
from tests.dashboard_server import DashboardProcess, dashboard, write_rules

HOSTILE_NAME = "<script>window.pwned = 1</script>"
HOSTILE_EVENT = '<img src=nothing onerror="window.pwned = 1">/${epoch}'
RULES: dict[str, Any] = {
    "watchers": [{"input_queue": "in"}],
    "schedules": [
        {"name": "hourly", "every_s": 3600, "event": "h/${hour}", "queue": "in"},
        {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris",
         "event": "export/${date}", "queue": "in"},
    ],
}  # fmt: skip
HOSTILE_RULES: dict[str, Any] = {
    "watchers": [{"input_queue": "in"}],
    "schedules": [{"name": HOSTILE_NAME, "every_s": 60, "event": HOSTILE_EVENT, "queue": "in"}],
}
RULESET = RuleSet.compile(Config.from_data(RULES))
[HOURLY] = [s for s in compile_schedules(RULESET.config) if s.name == "hourly"]


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    """Routers open more connections on ``r``: close them after."""
    yield
    r.connection_pool.disconnect()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_rules(tmp_path, RULES)


@pytest.fixture
def site(config: Path, redis_url: str, tmp_path: Path) -> Iterator[DashboardProcess]:
    with dashboard(config, redis_url, tmp_path) as running_dashboard:
        yield running_dashboard


def redis_now(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def fire_at(r: redis.Redis, clock_s: float, ruleset: RuleSet = RULESET) -> None:
    """A router runs its schedules (and rules) once, on a clock at ``clock_s``."""
    Router(ruleset=ruleset, client=r, clock=lambda: clock_s).run_until_idle()


def lag_shown(lag_ms: int) -> str:
    """A lag as the page writes it: milliseconds under 10 s, else as an age (``50s``,
    ``5m 3s``, ``1h 2m``)."""
    if lag_ms < 10_000:
        return f"{lag_ms} ms"
    s = lag_ms // 1000
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def explained(config: Path, at: int) -> list[dict[str, Any]]:
    """``explain --schedules --at AT --count 5 --json``."""
    args = ["explain", str(config), "--schedules", "--at", str(at), "--count", "5", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report: list[dict[str, Any]] = json.loads(result.stdout)
    return report


def shown_firings(page: Page, index: int) -> list[tuple[str, int]]:
    """The next firings the page lists for schedule ``index``: (local time, unix s)."""
    rows = page.locator(f"#firings-{index} tr:has(td.tick)")
    return [
        (
            rows.nth(i).locator("td.local").inner_text(),
            int(rows.nth(i).locator("td.tick").inner_text()),
        )
        for i in range(rows.count())
    ]


def test_the_schedules_page_shows_the_last_firing_redis_holds_and_the_next_ones_explain_gives(
    r: redis.Redis, site: DashboardProcess, page: Page, config: Path
) -> None:
    tick = int(redis_now(r)) // 3600 * 3600
    fire_at(r, tick + 0.5)
    state, _ = read_state(r, schedule_state("hourly"))
    assert state.tick == tick and state.fired == 1 and state.by and state.lag_ms is not None
    before = explained(config, int(redis_now(r)))
    page.goto(f"{site.url}/schedules")
    after = explained(config, int(redis_now(r)))
    hourly = page.locator("#schedule-0")
    assert hourly.locator(".name").inner_text() == "hourly"
    assert "every 3600 s" in hourly.locator(".when").inner_text()
    assert "(UTC" in hourly.locator(".when").inner_text()
    assert hourly.locator(".target").inner_text().startswith("list in")
    assert hourly.locator(".last-local").inner_text() == HOURLY.variables(tick)["iso"]
    assert hourly.locator(".last-utc").inner_text() == time.strftime(
        "%Y-%m-%d %H:%M:%S", time.gmtime(tick)
    )
    assert hourly.locator(".by").inner_text() == state.by
    assert hourly.locator(".lag").inner_text() == lag_shown(state.lag_ms)
    assert hourly.locator(".fired").inner_text() == "1"
    nightly = page.locator("#schedule-1")
    assert nightly.locator(".last").inner_text() == "never"
    assert nightly.locator(".fired").inner_text() == "0"
    assert "Europe/Paris" in nightly.locator(".when").inner_text()
    for index in (0, 1):
        shown = shown_firings(page, index)
        expected = [
            [(f["local"], f["tick"]) for f in report[index]["firings"]]
            for report in (before, after)
        ]
        assert len(shown) == 5 and shown in expected
        assert page.locator(f"#schedule-{index} .next-local").inner_text() == shown[0][0]
    shot(page, "schedules")


def test_the_schedules_page_refreshes_the_fired_count_without_a_reload(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    tick = int(redis_now(r)) // 3600 * 3600
    fire_at(r, tick - 3600 + 0.5)
    page.goto(f"{site.url}/schedules")
    assert page.locator("#schedule-0 .fired").inner_text() == "1"
    page.evaluate("window.sameDocument = true")
    fire_at(r, tick + 0.5)
    expect(page.locator("#schedule-0 .fired")).to_have_text("2", timeout=30_000)
    assert page.locator("#schedule-0 .last-utc").inner_text() == time.strftime(
        "%Y-%m-%d %H:%M:%S", time.gmtime(tick)
    )
    assert page.evaluate("window.sameDocument") is True


def test_a_hostile_schedule_name_and_event_are_shown_as_text_and_run_no_script(
    r: redis.Redis, redis_url: str, page: Page, tmp_path: Path
) -> None:
    minute = int(redis_now(r)) // 60 * 60
    fire_at(r, minute + 0.5, RuleSet.compile(Config.from_data(HOSTILE_RULES)))
    assert read_state(r, schedule_state(HOSTILE_NAME))[0].tick == minute
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with dashboard(write_rules(tmp_path, HOSTILE_RULES), redis_url, tmp_path) as site:
        before_s = redis_now(r)
        page.goto(f"{site.url}/schedules")
        after_s = redis_now(r)
        page.wait_for_timeout(300)  # an onerror would have fired by now
        shown = page.locator("main").inner_text()
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.locator("main img, main script").count() == 0
        row = page.locator("#schedule-0")
        assert row.locator(".name").inner_text() == HOSTILE_NAME
        assert row.locator(".event").inner_text() == HOSTILE_EVENT
        assert row.locator(".fired").inner_text() == "1"
        next_event = page.locator("#firings-0 code.event").first.inner_text()
    assert f"Next firings of {HOSTILE_NAME}" in shown
    # the next tick after the Redis clock when the page was made: a minute may have
    # begun while it loaded
    next_ticks = {int(t) // 60 * 60 + 60 for t in (before_s, after_s)}
    assert next_event in {f'<img src=nothing onerror="window.pwned = 1">/{t}' for t in next_ticks}
    assert dialogs == []


@pytest.mark.parametrize(
    ("odd", "problem"),
    [
        (lambda r, key: r.set(key, "x"), "holds a string, not a hash"),
        (
            lambda r, key: r.hset(key, mapping={"tick": "soon", "fired": 1}),
            "field 'tick' is no integer: 'soon'",
        ),
    ],
    ids=["wrong-type", "not-an-integer"],
)
def test_an_odd_state_hash_shows_on_its_schedules_row_and_breaks_no_page_or_status(
    r: redis.Redis, site: DashboardProcess, config: Path, redis_url: str, odd: Any, problem: str
) -> None:
    odd(r, schedule_state("hourly"))
    answer = httpx.get(f"{site.url}/schedules", timeout=10)
    assert answer.status_code == 200, answer.text
    assert problem in html.unescape(answer.text)
    assert answer.text.count("never") == 1  # nightly never fired; hourly says why it shows none
    result = CliRunner().invoke(main, ["status", str(config), "--redis-url", redis_url, "--json"])
    assert result.exit_code == 0, result.output
    [watcher] = json.loads(result.stdout)
    shown = {s["name"]: s for s in watcher["schedules"]}
    assert problem in shown["hourly"]["problem"]
    assert shown["nightly"]["problem"] is None

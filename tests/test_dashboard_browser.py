"""The dashboard in a real browser: Debian's chromium driven by Playwright, the real
server (``resc-dramatiq dashboard`` as a subprocess) against the test's real Redis.

Each page shows the figures of a Redis state built for the test; actions taken through
the pages reach Redis (and a running router routes a requeued event); a read-only
dashboard offers and accepts no action; hostile event text runs no script; the live
refresh changes a figure without a reload. With ``RESC_DASHBOARD_SCREENSHOTS=<dir>``
the tests save the screenshots of docs/dashboard.md there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from playwright.sync_api import Page, expect

from resc_dramatiq import Config, Router, RuleSet
from tests.browser import shot
from tests.dashboard_server import (
    RULES,
    DashboardProcess,
    dashboard,
    dead_letter,
    dead_message,
    queued_message,
    write_rules,
)
from tests.helpers import running, wait_for
from tests.procs import RouterProcess

RULESET = RuleSet.compile(Config.from_data(RULES))
HOSTILE = [
    b"x/<script>window.pwned = 1</script>",
    b'x/<img src=nothing onerror="window.pwned = 1">',
    b"x/\xff\xfe<b onmouseover=window.pwned=1>bytes</b>",
]


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[DashboardProcess]:
    with dashboard(write_rules(tmp_path), redis_url, tmp_path) as running_dashboard:
        yield running_dashboard


def route(r: redis.Redis, *events: bytes | str) -> None:
    """Push the events and let a router route them until idle."""
    r.lpush("in", *events)
    Router(ruleset=RULESET, client=r).run_until_idle()


def text(page: Page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_the_pipeline_page_shows_the_depths_and_counters_redis_holds(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    route(r, "a/1", "a/2", "/bad", "job/5", "b/1")
    r.lpush("in", "a/3", "a/4")  # not routed: no router runs now
    page.goto(f"{site.url}/pipeline")
    assert text(page, "#depth-0") == "2"
    assert text(page, "#dead-0") == "1"
    split = {c: text(page, f"#rule-0-0-{c}") for c in ("matched", "queued", "dead")}
    assert split == {"matched": "4", "queued": "3", "dead": "1"}
    assert (text(page, "#rule-0-1-name"), text(page, "#rule-0-1-queued")) == ("jobs", "1")
    assert page.locator("#chart-0 polyline").count() == 3
    shot(page, "pipeline")


def test_the_watcher_page_lists_the_dead_letters_redis_holds(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    for i in range(3):
        dead_letter(r, f"a/{i}".encode(), error=f"RuleError: number {i}", age_s=90)
    page.goto(f"{site.url}/watchers/0")
    assert text(page, "#dead-count") == "3"
    rows = page.locator("#dead-letters tr").all_inner_texts()[1:]
    assert [row.split("\t")[1] for row in rows] == ["a/2", "a/1", "a/0"]
    assert "RuleError: number 2" in rows[0]
    assert re.search(r"\t1m 3[0-4]s\t", rows[0])  # 90 s old, and the page took a moment
    shot(page, "watcher")


def test_the_targets_pages_show_ready_delayed_and_dead_messages_redis_holds(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    route(r, "a/1", "a/2", "job/1")
    queued_message(r, "jobs.DQ", [9])
    dead_message(r, [41], error="ValueError: no such product")
    page.goto(f"{site.url}/targets")
    raw = page.locator("#targets-0 tr", has_text="out/a").locator("td")
    assert raw.all_inner_texts()[:2] == ["out/a", "2"]
    assert raw.nth(2).locator("div").all_inner_texts() == ["1", "2"]  # taken next first
    page.click("text=jobs")
    assert (text(page, "#ready"), text(page, "#delayed"), text(page, "#dead-count")) == (
        "1",
        "1",
        "1",
    )
    row = text(page, "#dead-messages tr:nth-child(2)")
    assert "work" in row and "[41]" in row and "ValueError: no such product" in row
    shot(page, "queue")


def test_the_dedup_page_shows_size_oldest_entry_and_entries_past_ttl(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    route(r, "a/1", "a/2")
    r.zadd("todo", {"stuck/1": time.time() - 7200})  # older than the rule's ttl_s (60)
    page.goto(f"{site.url}/dedup")
    row = text(page, "#sets-0 tr:nth-child(2)")
    assert row.split("\t")[:3] == ["todo", "todo", "3"]
    assert "stuck/1" in row and "2h 0m" in row
    page.click("#sets-0 a")
    assert (text(page, "#size"), text(page, "#past-ttl")) == ("3", "1")
    page.click("text=entries past ttl_s")
    assert [row.split("\t")[1] for row in page.locator("#entries tr").all_inner_texts()[1:]] == [
        "stuck/1"
    ]
    page.goto(f"{site.url}/watchers/0/set?key=todo")
    page.fill("input[name=q]", "stuck")
    page.click("text=search")
    assert "no exact entry" in text(page, "#exact")
    assert page.locator("#found tr").all_inner_texts()[1].split("\t")[1] == "stuck/1"
    shot(page, "dedup")


def test_the_processes_page_shows_a_live_router_and_a_dramatiq_worker(
    r: redis.Redis, redis_url: str, tmp_path: Path, site: DashboardProcess, page: Page
) -> None:
    broker = RedisBroker(url=redis_url)
    dramatiq.actor(lambda n: None, broker=broker, actor_name="work", queue_name="jobs")
    router = RouterProcess(
        config=write_rules(tmp_path), redis_url=redis_url, log=tmp_path / "r.log", instance="r1"
    )
    try:
        with running(broker):
            wait_for(lambda: r.zcard("dramatiq:__heartbeats__"), 30, "a worker's heartbeat")
            wait_for(lambda: r.zcard("in/taken/instances"), 30, "the router's heartbeat")
            page.goto(f"{site.url}/processes")
            routers = text(page, "#routers")
            assert "r1" in routers and "alive" in routers
            workers = text(page, "#workers")
            assert broker.broker_id in workers and "alive" in workers
            shot(page, "processes")
    finally:
        router.stop()
        broker.close()


def test_a_dead_letter_requeued_through_the_page_is_routed_by_a_running_router(
    r: redis.Redis, redis_url: str, tmp_path: Path, site: DashboardProcess, page: Page
) -> None:
    dead_letter(r, b"a/7")  # say the rule failed for it, and was fixed since
    dead_letter(r, b"a/8")
    router = RouterProcess(
        config=write_rules(tmp_path), redis_url=redis_url, log=tmp_path / "r.log"
    )
    try:
        page.goto(f"{site.url}/watchers/0")
        page.locator("#dead-letters tr", has_text="a/7").locator("text=requeue").click()
        assert text(page, "#confirm-title") == "Requeue 1 dead letters of in?"
        assert text(page, "#confirm-items") == "a/7"
        shot(page, "confirm")
        page.click("#confirm")
        assert text(page, "#notice") == "1 requeued"
        wait_for(lambda: r.lrange("out/a", 0, -1) == [b"7"], 30, "a/7 routed")
        assert [e for e in r.lrange("in/dead", 0, -1) if b"a/8" in e]
        assert r.llen("in/dead") == 1
    finally:
        router.stop()


def test_selected_dead_messages_requeued_through_the_page_are_back_on_their_queue(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    ids = [dead_message(r, [n]) for n in range(3)]
    page.goto(f"{site.url}/watchers/0/queue?name=jobs")
    for redis_id in ids[:2]:
        page.check(f"input[value='{redis_id}']")
    page.click("text=requeue selected")
    assert text(page, "#confirm-title") == "Requeue 2 dead messages of jobs?"
    page.click("#confirm")
    assert text(page, "#notice") == "2 requeued"
    assert sorted(r.lrange("dramatiq:jobs", 0, -1)) == sorted(i.encode() for i in ids[:2])
    assert r.zrange("dramatiq:jobs.XQ", 0, -1) == [ids[2].encode()]


def test_a_dedup_entry_removed_through_the_page_leaves_the_set(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    r.zadd("todo", {"t/1": 1, "t/2": 2})
    page.goto(f"{site.url}/watchers/0/set?key=todo")
    page.locator("#entries tr", has_text="t/1").locator("text=remove").click()
    page.click("#confirm")
    assert text(page, "#notice") == "1 removed"
    assert r.zrange("todo", 0, -1) == [b"t/2"]


def test_a_read_only_dashboard_shows_no_action_and_refuses_a_posted_one(
    r: redis.Redis, redis_url: str, tmp_path: Path, page: Page
) -> None:
    dead_letter(r, b"a/1")
    with dashboard(write_rules(tmp_path), redis_url, tmp_path, "--read-only") as ro:
        page.goto(f"{ro.url}/watchers/0")
        assert text(page, "#read-only") == "read-only"
        assert page.locator("#dead-form button").count() == 0
        csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
        form = {"csrf": csrf, "do": "drop:all", "confirmed": "1"}
        answer = page.request.post(f"{ro.url}/watchers/0/dead", form=form)
        assert answer.status == 403
        assert "read-only" in answer.text()
    assert r.llen("in/dead") == 1


def test_hostile_event_text_is_shown_as_text_and_runs_no_script(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    for event in HOSTILE:
        dead_letter(r, event)
        r.zadd("todo", {event: 1})
        r.lpush("out/x", event)
    dead_message(r, [HOSTILE[0].decode()], error="<img src=nothing onerror=window.pwned=1>")
    dialogs: list[str] = []  # an alert() would open one
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pages = ["/watchers/0", "/targets", "/watchers/0/queue?name=jobs", "/dedup"]
    pages += ["/watchers/0/set?key=todo"]
    for path in pages:
        page.goto(f"{site.url}{path}")
        page.wait_for_timeout(300)  # an onerror would have fired by now
        assert page.evaluate("typeof window.pwned") == "undefined", path
        assert page.locator("main img, main b, main script").count() == 0, path
    page.goto(f"{site.url}/watchers/0")
    shown = page.locator("#dead-letters").inner_text()
    assert "x/<script>window.pwned = 1</script>" in shown
    assert "x/\ufffd\ufffd<b onmouseover=window.pwned=1>bytes</b>" in shown
    page.goto(f"{site.url}/watchers/0/queue?name=jobs")
    assert '["x/<script>window.pwned = 1</script>"]' in page.locator("#dead-messages").inner_text()
    assert dialogs == []


def test_live_refresh_updates_a_number_without_a_reload(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    page.goto(f"{site.url}/watchers/0")
    assert text(page, "#depth") == "0"
    page.evaluate("window.sameDocument = true")
    r.lpush("in", "a/1", "a/2", "a/3")
    expect(page.locator("#depth")).to_have_text("3", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True

"""The dashboard's why page: a task's chain back to its root with each step's status,
over HTTP (bounded, escaped, odd keys) and in a real browser (asked through the form,
followed link by link, a hostile task string).

The real server (``resc-dramatiq dashboard`` as a subprocess) runs against the test's
real Redis; the lineage records are made by the real router.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Page

from resc_dramatiq import Config, Router, RuleSet
from tests.browser import shot
from tests.dashboard_server import DashboardProcess, dashboard, write_rules

#: ``e/<any>`` makes the raw task ``t/<any>`` on ``out`` and the actor ``work``'s
#: message ``w/<any>``; lineage on.
ON, W = r"(?s)^e/(?P<x>.+)$", "w/${x}"
RULES: dict[str, Any] = {
    "watchers": [
        {
            "input_queue": "done",
            "lineage": True,
            "rules": [
                {"name": "raw", "on": ON, "make": {"queue": "out", "task": "t/${x}"}},
                {"name": "msg", "on": ON, "make": {"actor": "work", "queue": "jobs", "task": W}},
            ],
        }
    ]
}  # fmt: skip
RULESET = RuleSet.compile(Config.from_data(RULES))
HOSTILE = "<script>window.pwned = 1</script><img src=x onerror=window.pwned=1>"


def route(r: redis.Redis, *events: str) -> None:
    r.lpush("done", *events)
    Router(ruleset=RULESET, client=r).run_until_idle()


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[DashboardProcess]:
    with dashboard(write_rules(tmp_path, RULES), redis_url, tmp_path) as running:
        yield running


def test_the_why_page_shows_a_tasks_chain_with_its_status(
    r: redis.Redis, site: DashboardProcess
) -> None:
    route(r, "e/1")
    html = httpx.get(f"{site.url}/why", params={"q": "t/1"}).text
    assert '<td class="status queued">queued</td>' in html
    assert "event <code>e/1</code>" in html and "<code>raw</code>" in html
    message = httpx.get(f"{site.url}/why", params={"q": "w/1"}).text
    assert "to actor <code>work</code> on <code>jobs</code>" in message
    assert '<td class="status queued">queued</td>' in message


def test_the_why_page_says_when_there_is_no_record_and_refuses_a_huge_question(
    r: redis.Redis, site: DashboardProcess
) -> None:
    missing = httpx.get(f"{site.url}/why", params={"q": "t/none"})
    assert missing.status_code == 200 and 'id="why-missing"' in missing.text
    huge = httpx.get(f"{site.url}/why", params={"q": "x" * 5000})
    assert huge.status_code == 400 and huge.text == "400: ask about at most 4096 characters\n"
    assert httpx.get(f"{site.url}/why").status_code == 200  # the form alone


def test_the_why_page_names_odd_keys_and_survives_broken_records(
    r: redis.Redis, site: DashboardProcess
) -> None:
    route(r, "e/0")
    [bucket] = r.scan_iter("done/lineage/*")
    r.hset(bucket, mapping={"t:a": "{broken", "t:b": '{"task": "b", "queue": "odd"}'})
    r.hset("odd", "x", "y")
    assert 'id="why-missing"' in httpx.get(f"{site.url}/why", params={"q": "a"}).text
    b = httpx.get(f"{site.url}/why", params={"q": "b"})
    assert b.status_code == 200 and "odd key:" in b.text
    r.delete(bucket)
    r.set(bucket, "a string")
    assert 'id="why-missing"' in httpx.get(f"{site.url}/why", params={"q": "a"}).text


# --- in the browser ---------------------------------------------------------------------


def test_a_chain_asked_through_the_form_and_a_hostile_task_run_no_script(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    route(r, "e/7", f"e/{HOSTILE}")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{site.url}/why")
    page.fill("#why-form input[name=q]", "w/7")
    page.click("#why-form button")
    rows = page.locator("#why-chain tr.step")
    assert rows.count() == 2
    assert rows.nth(0).locator(".status").inner_text() == "queued"
    assert rows.nth(1).locator(".what").inner_text() == "event e/7"
    shot(page, "why")
    page.fill("#why-form input[name=q]", f"t/{HOSTILE}")
    page.click("#why-form button")
    page.wait_for_timeout(300)  # an onerror would have fired by now
    assert page.evaluate("typeof window.pwned") == "undefined" and dialogs == []
    assert page.locator("main img, main script").count() == 0
    assert page.locator("#why-chain tr.step").nth(1).locator(".what").inner_text() == (
        f"event e/{HOSTILE}"
    )

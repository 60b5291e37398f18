"""A keyspace that cannot break a page: keys of unexpected types, malformed dead
letters, huge values, counters that are no integers, templates of variables alone, and
integer parameters that are no integers.

The real server (``resc-dramatiq dashboard`` as a subprocess) against the test's Redis;
one page in a real browser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Page, expect

from tests.dashboard_server import DashboardProcess, csrf_of, dashboard, post, write_rules

PAGES = ("/pipeline", "/watchers", "/watchers/0", "/targets", "/dedup", "/processes", "/schedules")
MALFORMED = (
    b'{"event":"x/1","attempts":"three"}',
    b'{"event":"x/2","at":1e400}',
    b'{"event":"x/3","event_hex":"zz"}',
)
#: Every target and set a template of variables alone: any key.
DYNAMIC = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [
                {"name": "raw", "on": "^r/(?P<q>.+)$", "make": {"queue": "${q}", "set": "${q}"}},
                {"name": "job", "on": "^j/(?P<q>.+)$", "make": {"actor": "w", "queue": "${q}"}},
            ],
        }
    ]
}
#: A target template with a literal that the routers' own keys also match.
PREFIXED = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [{"on": "^(?P<x>.+)$", "make": {"queue": "in/${x}", "set": "in/${x}"}}],
        }
    ]
}


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[DashboardProcess]:
    with dashboard(write_rules(tmp_path), redis_url, tmp_path) as running:
        yield running


def get(site: DashboardProcess, path: str) -> httpx.Response:
    return httpx.get(f"{site.url}{path}", timeout=30)


def test_a_zset_at_a_target_key_shows_on_its_row_and_every_page_answers(
    r: redis.Redis, site: DashboardProcess
) -> None:
    r.zadd("out/x", {"a": 1})
    r.lpush("out/y", "t1", "t2")
    for path in PAGES:
        assert get(site, path).status_code == 200, path
    targets = get(site, "/targets").text
    assert "out/x: holds a zset, not a list" in targets
    assert re.search(r"<code>out/y</code></td>\s*<td class=\"n\">2</td>", targets)
    assert site.output().count("odd key out/x: holds a zset, not a list") == 1


def test_strings_at_the_input_the_dedup_set_and_the_dramatiq_queue_are_named(
    r: redis.Redis, site: DashboardProcess
) -> None:
    r.set("in", "x")
    r.set("todo", "x")
    r.set("dramatiq:jobs", "x")
    r.lpush("in/dead", json.dumps({"event": "a/1"}))
    for path in (*PAGES, "/watchers/0/set?key=todo", "/watchers/0/queue?name=jobs"):
        answer = get(site, path)
        assert answer.status_code == 200, path
        assert "Redis unreachable" not in answer.text
    assert "in: holds a string, not a list" in get(site, "/pipeline").text
    assert "todo: holds a string, not a zset" in get(site, "/dedup").text
    assert "todo: holds a string, not a zset" in get(site, "/watchers/0/set?key=todo").text
    assert "dramatiq:jobs: holds a string, not a list" in get(site, "/targets").text
    assert (
        "dramatiq:jobs: holds a string, not a list" in get(site, "/watchers/0/queue?name=jobs").text
    )
    assert "a/1" in get(site, "/watchers/0").text  # the dead letters are read all the same


def test_removing_from_a_dedup_set_of_another_type_is_refused(
    r: redis.Redis, site: DashboardProcess
) -> None:
    r.set("todo", "x")
    form = {"csrf": csrf_of(site), "do": f"remove:{b'x'.hex()}", "confirmed": "1"}
    answer = post(site, "/watchers/0/set/remove?key=todo", form)
    assert answer.status_code == 409
    assert "todo: holds a string, not a zset" in answer.text
    assert r.get("todo") == b"x"


def test_a_counter_that_is_no_integer_is_named_and_the_others_are_shown(
    r: redis.Redis, site: DashboardProcess
) -> None:
    r.hset("in/stats", mapping={"events": "many", "queued": 7})
    for path in PAGES:
        assert get(site, path).status_code == 200, path
    watcher = get(site, "/watchers/0").text
    assert "in/stats: counter &#39;events&#39; is no integer: &#39;many&#39;" in watcher
    assert re.search(r"<th>queued</th><td class=\"n\">7</td>", watcher)


def test_malformed_dead_letters_are_shown_and_requeued_with_their_event(
    r: redis.Redis, site: DashboardProcess
) -> None:
    r.lpush("in/dead", *MALFORMED)
    page = get(site, "/watchers/0")
    assert page.status_code == 200
    assert page.text.count("malformed entry:") == 3
    assert "attempts is no number: &#34;three&#34;" in page.text
    assert "at is no number: Infinity" in page.text
    assert "event_hex is no hex: &#39;zz&#39;" in page.text
    form = {"csrf": csrf_of(site), "do": "requeue:all", "confirmed": "1"}
    answer = post(site, "/watchers/0/dead", form)
    assert answer.headers["location"] == "/watchers/0?notice=3+requeued"
    assert sorted(r.lrange("in", 0, -1)) == [b"x/1", b"x/2", b"x/3"]


def test_the_notice_after_a_drop_says_dropped(r: redis.Redis, site: DashboardProcess) -> None:
    r.lpush("in/dead", json.dumps({"event": "a/1"}))
    form = {"csrf": csrf_of(site), "do": "drop:all", "confirmed": "1"}
    answer = post(site, "/watchers/0/dead", form)
    assert answer.headers["location"] == "/watchers/0?notice=1+dropped"


def test_huge_dead_letters_are_cut_on_the_page_and_whole_a_link_away(
    r: redis.Redis, site: DashboardProcess
) -> None:
    huge = [json.dumps({"event": f"x/{i}/" + "y" * 1024 * 1024}).encode() for i in range(3)]
    r.lpush("in/dead", *huge)
    page = get(site, "/watchers/0")
    assert page.status_code == 200
    assert len(page.content) < 100_000
    refs = re.findall(r'href="/watchers/0/dead/entry\?ref=([^"]+)"', page.text)
    assert len(refs) == 3
    whole = httpx.get(f"{site.url}/watchers/0/dead/entry", params={"ref": unquote(refs[0])})
    assert whole.content == huge[2]  # the newest first
    assert whole.headers["content-disposition"].startswith("attachment")
    form = {"csrf": csrf_of(site), "do": f"requeue:{unquote(refs[1])}", "confirmed": "1"}
    assert post(site, "/watchers/0/dead", form).headers["location"].endswith("=1+requeued")
    assert r.lrange("in", 0, -1) == [json.loads(huge[1])["event"].encode()]
    assert r.llen("in/dead") == 2


def unquote(value: str) -> str:
    return httpx.QueryParams(f"v={value}")["v"]


@pytest.mark.parametrize("value", ["²", "9" * 5000, "9" * 20, "-1", "1e3"])
def test_an_offset_or_cursor_that_is_no_whole_number_answers_400(
    site: DashboardProcess, value: str
) -> None:
    for path in (
        f"/watchers/0?offset={value}",
        f"/watchers/0/queue?name=jobs&offset={value}",
        f"/watchers/0/set?key=todo&offset={value}",
        f"/watchers/0/set?key=todo&q=x&cursor={value}",
    ):
        answer = get(site, path)
        assert answer.status_code == 400, path
        assert "must be a whole number" in answer.text


def test_templates_of_variables_alone_are_dynamic_and_scan_nothing(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.hset("in/stats", mapping={"events": 1})
    r.zadd("in/taken/instances", {"router-1": 1})
    r.set("plain", "x")
    r.lpush("any-list", "t")
    with dashboard(write_rules(tmp_path, DYNAMIC), redis_url, tmp_path) as site:
        r.config_resetstat()
        for path in PAGES:
            assert get(site, path).status_code == 200, path
        assert "cmdstat_scan" not in r.info("commandstats")
        assert "${q}: any name" in get(site, "/targets").text
        assert "${q}: any sorted set" in get(site, "/dedup").text
        for key in ("in/taken/instances", "any-list", "plain"):
            assert get(site, f"/watchers/0/set?key={key}").status_code == 404, key
        assert get(site, "/watchers/0/queue?name=anything").status_code == 404
        form = {"csrf": csrf_of(site), "do": f"remove:{b'router-1'.hex()}", "confirmed": "1"}
        answer = post(site, "/watchers/0/set/remove?key=in/taken/instances", form)
        assert answer.status_code == 404
    assert r.zcard("in/taken/instances") == 1


def test_the_routers_own_keys_are_never_targets_or_sets(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.hset("in/stats", mapping={"events": 1})
    r.lpush("in/taken/router-1", "e")
    r.zadd("in/taken/instances", {"router-1": 1})
    r.lpush("in/out", "t")
    with dashboard(write_rules(tmp_path, PREFIXED), redis_url, tmp_path) as site:
        targets = get(site, "/targets").text
        assert "in/out" in targets
        assert "in/stats" not in targets and "in/taken" not in targets
        assert "in/taken" not in get(site, "/dedup").text
        assert get(site, "/watchers/0/set?key=in/taken/instances").status_code == 404


def test_a_page_with_a_key_of_another_type_shows_its_other_rows_in_a_browser(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    r.zadd("out/x", {"a": 1})
    r.lpush("out/y", "t1", "t2")
    r.set("todo", "x")
    page.goto(f"{site.url}/targets")
    section = page.locator("#targets-0")
    expect(section.locator("td.problem")).to_have_text("out/x: holds a zset, not a list")
    row = section.locator("tr", has=page.locator("code", has_text="out/y"))
    expect(row.locator("td.n")).to_have_text("2")
    expect(row.locator(".event").first).to_have_text("t1")
    expect(page.locator("#odd-keys-0")).to_contain_text("out/x: holds a zset, not a list")
    page.goto(f"{site.url}/dedup")
    expect(page.locator("#sets-0 td.problem")).to_have_text("todo: holds a string, not a zset")

"""The dashboard's joins: open groups per join rule, one group, and its complete and drop
actions, over HTTP (CSRF, Host, confirmation, a group no longer open) and in a real
browser (the figures, an action taken through the page, hostile group names).

The real server (``resc-dramatiq dashboard`` as a subprocess) runs against the test's
real Redis; the groups are made by the real router.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Page

from resc_dramatiq import Config, Router, RuleSet
from resc_dramatiq.store.joins import JoinKeys
from tests.browser import shot
from tests.dashboard_server import DashboardProcess, dashboard, post, write_rules

#: ``<stage>/<roll>``: a roll is packed when cut, weighed and inspected; ``name/<any>``
#: puts a member in a group named by the event's text (hostile names).
RULES: dict[str, Any] = {
    "watchers": [
        {
            "input_queue": "done",
            "rules": [
                {
                    "name": "pack",
                    "on": r"^(?P<stage>cut|weigh|inspect)/(?P<roll>\d+)$",
                    "join": {
                        "group": "roll/${roll}",
                        "member": "${stage}",
                        "expect": ["cut", "weigh", "inspect"],
                        "deadline_s": 600,
                    },
                    "make": {"task": "pack/${roll} (${join.size})", "queue": "pack"},
                },
                {
                    "name": "named",
                    "on": r"(?s)^name/(?P<g>.+)$",
                    "join": {"group": "${g}", "expect": 2},
                    "make": {"task": "named", "queue": "named"},
                },
            ],
        }
    ]
}
RULESET = RuleSet.compile(Config.from_data(RULES))
KEYS = JoinKeys.of("done")
HOSTILE = "<script>window.pwned = 1</script><img src=x onerror=window.pwned=1>"


def route(r: redis.Redis, *events: str) -> None:
    r.lpush("done", *events)
    Router(ruleset=RULESET, client=r).run_until_idle()


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[DashboardProcess]:
    with dashboard(write_rules(tmp_path, RULES), redis_url, tmp_path) as running:
        yield running


def csrf(site: DashboardProcess) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', httpx.get(f"{site.url}/joins").text)
    assert found is not None
    return found.group(1)


def act(site: DashboardProcess, do: str, group: str, **more: Any) -> httpx.Response:
    form = {"csrf": csrf(site), "do": f"{do}:{group.encode().hex()}", **more}
    return post(site, "/joins/0/group", form)


# --- over HTTP --------------------------------------------------------------------------


def test_the_joins_page_lists_open_groups_per_rule_with_members_and_deadline(
    r: redis.Redis, site: DashboardProcess
) -> None:
    route(r, "cut/1", "weigh/1", "cut/2")
    html = httpx.get(f"{site.url}/joins").text
    assert '<td class="n open">2</td>' in html
    assert '<td class="members">2 of 3</td>' in html and '<td class="members">1 of 3</td>' in html
    assert re.search(r'<td class="deadline">in 9m \d+s</td>', html)
    assert 'href="/joins/0/group?group=roll/1"' in html
    one = httpx.get(f"{site.url}/joins/0/group", params={"group": "roll/1"}).text
    assert '<td id="group-missing"><code>inspect</code> </td>' in one


def test_complete_asks_for_confirmation_then_fires_the_make_once(
    r: redis.Redis, site: DashboardProcess
) -> None:
    route(r, "cut/3")
    asked = act(site, "complete", "roll/3")
    assert asked.status_code == 200
    assert "Complete join group roll/3 of rule pack?" in asked.text
    assert "pack/3 (3) to pack" in asked.text and r.llen("pack") == 0
    done = act(site, "complete", "roll/3", confirmed="1")
    assert done.status_code == 303
    assert done.headers["location"] == "/joins?notice=group+roll%2F3+completed%3A+1+queued"
    assert r.lrange("pack", 0, -1) == [b"pack/3 (3)"]
    again = act(site, "drop", "roll/3", confirmed="1")
    assert again.status_code == 409
    assert again.text == "409: nothing done: group 'roll/3' is not open: it is done\n"
    assert r.hget(KEYS.group("roll/3"), "state") == b"done"


def test_drop_closes_the_group_and_fires_nothing(r: redis.Redis, site: DashboardProcess) -> None:
    route(r, "cut/4")
    done = act(site, "drop", "roll/4", confirmed="1")
    assert done.headers["location"] == "/joins?notice=group+roll%2F4+dropped"
    assert r.hget(KEYS.group("roll/4"), "state") == b"dropped" and r.llen("pack") == 0


def test_an_action_without_csrf_or_from_a_foreign_host_changes_nothing(
    r: redis.Redis, site: DashboardProcess
) -> None:
    route(r, "cut/5")
    form = {"do": f"drop:{b'roll/5'.hex()}", "confirmed": "1"}
    forged = post(site, "/joins/0/group", {**form, "csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    rebound = {"host": f"attacker.example:{site.port}", "origin": "http://attacker.example"}
    foreign = httpx.post(
        f"{site.url}/joins/0/group", data={**form, "csrf": csrf(site)}, headers=rebound
    )
    assert foreign.status_code == 400
    assert foreign.text == "400: Host not allowed (see --allowed-host)\n"
    assert r.hget(KEYS.group("roll/5"), "state") == b"open"


def test_a_group_of_no_join_rule_or_a_malformed_name_is_refused(
    r: redis.Redis, site: DashboardProcess
) -> None:
    r.hset(KEYS.group("stray"), mapping={"state": "open", "rule": "other", "first": "1"})
    assert act(site, "drop", "stray", confirmed="1").status_code == 404
    malformed = post(site, "/joins/0/group", {"csrf": csrf(site), "do": "drop:zz"})
    assert malformed.status_code == 400
    missing = httpx.get(f"{site.url}/joins/0/group", params={"group": "nope"})
    assert missing.status_code == 404
    assert r.hget(KEYS.group("stray"), "state") == b"open"


def test_a_hostile_group_name_is_escaped_on_every_page(
    r: redis.Redis, site: DashboardProcess
) -> None:
    route(r, f"name/{HOSTILE}")
    for html in (
        httpx.get(f"{site.url}/joins").text,
        httpx.get(f"{site.url}/joins/0/group", params={"group": HOSTILE}).text,
        act(site, "drop", HOSTILE).text,  # the confirmation page
    ):
        assert "<script>window" not in html and "<img src=x" not in html
        assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html


def test_odd_join_keys_are_named_and_the_rest_is_shown(
    r: redis.Redis, site: DashboardProcess
) -> None:
    route(r, "cut/6")
    r.zadd(KEYS.open, {KEYS.group("text"): 0})
    r.set(KEYS.group("text"), "x")
    r.set(KEYS.due, "x")
    answer = httpx.get(f"{site.url}/joins")
    assert answer.status_code == 200
    assert "resc/joins/group/text: in the join index, holds a string, not a hash" in answer.text
    assert "resc/joins/due: holds a string, not a zset" in answer.text
    assert '<td class="members">1 of 3</td>' in answer.text
    stray = httpx.get(f"{site.url}/joins/0/group", params={"group": "text"})
    assert stray.status_code == 409 and "holds a string, not a hash" in stray.text


def test_a_read_only_dashboard_offers_no_join_action_and_refuses_one(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    route(r, "cut/9")
    with dashboard(write_rules(tmp_path, RULES), redis_url, tmp_path, "--read-only") as ro:
        assert "complete" not in httpx.get(f"{ro.url}/joins/0/group?group=roll/9").text
        answer = act(ro, "drop", "roll/9", confirmed="1")
        assert answer.status_code == 403 and "read-only" in answer.text
    assert r.hget(KEYS.group("roll/9"), "state") == b"open"


# --- in the browser ---------------------------------------------------------------------


def test_a_stuck_group_completed_through_the_pages(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    route(r, "cut/7", "weigh/7", "cut/8")
    page.goto(f"{site.url}/joins")
    assert page.locator("#join-0-0 .open").inner_text() == "2"
    assert page.locator("#groups-0-0 .members").all_inner_texts() == ["2 of 3", "1 of 3"]
    shot(page, "joins")
    page.click("#groups-0-0 a:has-text('roll/7')")
    assert page.locator("#group-missing").inner_text().strip() == "inspect"
    assert page.locator("#group-progress").inner_text() == "2 of 3 counted; 2 seen"
    shot(page, "join-group")
    page.click("text=complete now")
    assert page.locator("#confirm-title").inner_text() == "Complete join group roll/7 of rule pack?"
    page.click("#confirm")
    assert page.locator("#notice").inner_text() == "group roll/7 completed: 1 queued"
    assert r.lrange("pack", 0, -1) == [b"pack/7 (3)"]
    assert page.locator("#join-0-0 .open").inner_text() == "1"
    assert page.locator("#join-0-0 .completed").inner_text() == "1"


def test_a_hostile_group_name_runs_no_script_and_can_be_dropped(
    r: redis.Redis, site: DashboardProcess, page: Page
) -> None:
    route(r, f"name/{HOSTILE}")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{site.url}/joins")
    page.wait_for_timeout(300)  # an onerror would have fired by now
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("main img, main script").count() == 0
    row = page.locator("#groups-0-1 tr.group")
    assert row.locator(".group-name").inner_text() == HOSTILE
    row.locator("text=drop").click()
    page.click("#confirm")
    assert page.locator("#notice").inner_text() == f"group {HOSTILE} dropped"
    assert r.hget(KEYS.group(HOSTILE), "state") == b"dropped"
    assert page.evaluate("typeof window.pwned") == "undefined" and dialogs == []

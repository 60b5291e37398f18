"""The pipeline graph in a real browser (Debian's chromium, the real dashboard process, the
test's real Redis): the join drawn as a merge point, a rate on an edge, a stalled watcher
marked in words, hostile names shown as text. With ``RESC_DASHBOARD_SCREENSHOTS=<dir>``
it saves docs/images/pipeline-graph.png there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from playwright.sync_api import Page, expect

from resc_dramatiq import Config, Router, RuleSet
from resc_dramatiq.store.keys import WatcherKeys
from tests.browser import shot
from tests.dashboard_server import dashboard, write_rules

#: Acquisitions fan out into treatments (a group per process); the report joins them;
#: a failed treatment fails its group; reports go to a raw list for resc workers.
GRAPH_RULES: dict[str, Any] = {
    "watchers": [
        {
            "input_queue": "global/done",
            "rules": [
                {
                    "name": "treat each product",
                    "on": r"^acq/(?P<p>\d+)/(?P<n>\d+)$",
                    "make": {
                        "actor": "treat",
                        "queue": "treat",
                        "task": "trt/${p}/${n}",
                        "group": "proc/${p}",
                    },
                },
                {
                    "name": "report a process",
                    "on": r"^trt/(?P<p>\d+)/\d+$",
                    "join": {"group": "proc/${p}", "expect": "fan-out"},
                    "make": {"actor": "report", "queue": "report", "task": "report/${p}"},
                },
                {"name": "archive", "on": r"^report/(?P<p>\d+)$", "make": {"queue": "archive"}},
            ],
        },
        {
            "input_queue": "global/done/failed",
            "rules": [
                {
                    "name": "a treatment failed",
                    "on": r"^trt/(?P<p>\d+)/\d+$",
                    "join": {"group": "proc/${p}", "fail": True},
                    "make": {"task": "scrap/${p}", "queue": "scrap"},
                }
            ],
        },
    ]
}


def past_minutes(r: redis.Redis, counts: dict[str, int], minutes: int = 5) -> None:
    """``counts`` in each of the last ``minutes`` full minutes of watcher global/done's
    history, as the commit script writes them."""
    ruleset = RuleSet.compile(Config.from_data(GRAPH_RULES))
    keys = WatcherKeys.of(ruleset.watchers[0].spec, "")
    now_minute = int(r.time()[0]) // 60
    for minute in range(now_minute - minutes, now_minute):
        r.hset(keys.history_at(minute), mapping=counts)


def test_the_graph_draws_the_join_a_rate_and_a_stalled_watcher(
    r: redis.Redis, redis_url: str, tmp_path: Path, page: Page
) -> None:
    ruleset = RuleSet.compile(Config.from_data(GRAPH_RULES))
    r.lpush("global/done", "acq/7/1", "acq/7/2", "acq/7/3", "trt/7/1")
    Router(ruleset=ruleset, client=r).run_until_idle()
    past_minutes(
        r,
        {
            "events": 12,
            "treat each product|matched": 6,
            "treat each product|queued": 6,
            "report a process|matched": 6,
            "report a process|completed": 2,
        },
    )
    r.lpush("global/done/failed", "trt/8/1", "trt/8/2")  # no router takes them: stalled
    with dashboard(write_rules(tmp_path, GRAPH_RULES), redis_url, tmp_path) as site:
        page.goto(f"{site.url}/pipeline")
        join = page.locator("#graph g.node.join")
        expect(join).to_be_visible()
        expect(join).to_contain_text("report a process")
        expect(join).to_contain_text("completed 2.0/min")
        assert page.locator("#graph g.node.join polygon").count() == 1  # a distinct shape
        fan_out = page.locator("#graph g.edge.fan-out text.rate")
        expect(fan_out).to_have_text("fan-out 6.0/min")
        matched = page.locator("#graph g.edge.matched text.rate", has_text="6.0/min")
        expect(matched.first).to_be_visible()
        stalled = page.locator("#graph g.node.list.marked", has_text="global/done/failed")
        expect(stalled).to_contain_text("stalled")
        assert page.locator("#graph g.node.list.marked").count() == 1  # global/done is not
        assert page.locator("#graph g.edge.stalled").count() == 1
        assert page.locator("#graph g.edge.done").count() >= 2  # done events come back
        assert page.locator("#chart-0 text.axis", has_text="now").count() == 1
        shot(page, "pipeline-graph")


def test_hostile_rule_and_list_names_in_the_graph_are_text(
    r: redis.Redis, redis_url: str, tmp_path: Path, page: Page
) -> None:
    hostile = '<img src=nothing onerror="window.pwned = 1">'
    rules = {
        "watchers": [
            {
                "input_queue": f"in/{hostile}",
                "rules": [
                    {
                        "name": f"rule {hostile}",
                        "on": "^(?P<x>.*)$",
                        "make": {"queue": f"out/{hostile}"},
                    }
                ],
            }
        ]
    }
    with dashboard(write_rules(tmp_path, rules), redis_url, tmp_path) as site:
        page.goto(f"{site.url}/pipeline")
        expect(page.locator("#graph g.node.rule")).to_contain_text("rule <img src=")
        page.wait_for_timeout(300)  # an onerror would have fired by now
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.locator("main img").count() == 0

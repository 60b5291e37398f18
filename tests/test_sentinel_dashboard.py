"""The dashboard through Sentinel: ``kill -9`` of the primary, and it carries on.

A real primary, a replica and three Sentinels (tests/sentinel.py); the real dashboard
(``resc-dramatiq dashboard`` as a subprocess) on the ``redis+sentinel://`` URL. After the
kill, its pages answer again with the figures of the promoted replica, within a bounded
time, without any restart of the dashboard process; meanwhile a page answers 503
(``Redis unreachable``) or, once the primary is found again, 200. The open page in a
browser follows by its live refresh alone. Select with ``-m failover``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from resc_dramatiq import connect
from tests.dashboard_server import DashboardProcess, dashboard, write_rules
from tests.helpers import wait_for
from tests.sentinel import SERVICE, SentinelCluster, Server, sentinel_cluster

pytestmark = [pytest.mark.failover, pytest.mark.timeout(300)]

#: How long after the kill the pages may take to show the new primary's figures (the
#: Sentinels need ~1 s to agree, a client ~16 s of retries at most; the machine is loaded).
ANSWER_BOUND_S = 60.0
PAGES = ["/pipeline", "/watchers", "/watchers/0", "/targets", "/dedup", "/processes"]
PAGES += ["/schedules"]


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    with sentinel_cluster() as running:
        yield running


@pytest.fixture
def site(cluster: SentinelCluster, tmp_path: Path) -> Iterator[DashboardProcess]:
    client = connect(cluster.url)
    client.lpush("in", "a/1", "a/2", "a/3")
    assert client.wait(1, 10_000) == 1  # on the replica too: the figures survive the kill
    client.close()
    with dashboard(write_rules(tmp_path), cluster.url, tmp_path) as running:
        yield running


def depth(site: DashboardProcess) -> tuple[int, int | None]:
    """The watcher page's status code and the input depth it shows (None: not shown)."""
    try:
        answer = httpx.get(f"{site.url}/watchers/0", timeout=40)
    except httpx.TimeoutException:
        return 0, None
    found = re.search(r'id="depth">(\d+)<', answer.text)
    return answer.status_code, int(found.group(1)) if found else None


def fail_over(cluster: SentinelCluster) -> tuple[float, Server, Server]:
    """Kill -9 the primary, wait for the promoted replica; (kill time, old, new)."""
    killed_at = time.monotonic()
    old = cluster.kill_primary()
    return killed_at, old, cluster.wait_for_new_primary(old)


class Poller:
    """GETs the watcher page every 0.2 s from a thread: (seconds since start when asked,
    when answered, status, depth shown) of each request (status 0: no answer in 40 s)."""

    def __init__(self, site: DashboardProcess) -> None:
        self.site = site
        self.seen: list[tuple[float, float, int, int | None]] = []
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            asked = self.since()
            status, shown = depth(self.site)
            self.seen.append((asked, self.since(), status, shown))

    def since(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def shows(self, figure: int) -> bool:
        return any(status == 200 and shown == figure for *_, status, shown in self.seen)

    def end(self) -> list[tuple[float, float, int, int | None]]:
        self.stop.set()
        self.thread.join(timeout=60)
        return self.seen


def test_the_dashboard_answers_with_the_new_primarys_figures_after_a_failover_without_restart(
    cluster: SentinelCluster, site: DashboardProcess
) -> None:
    assert depth(site) == (200, 3)
    pid = site.proc.pid
    poller = Poller(site)
    killed_at, old, new = fail_over(cluster)  # the poller's clock starts at the kill
    promoted_s = poller.since()
    new.client().lpush("in", "b/1", "b/2")  # only the new primary has these: depth 5
    try:
        wait_for(lambda: poller.shows(5), timeout_s=ANSWER_BOUND_S, what="the new figures")
        answer_s = time.monotonic() - killed_at
    finally:
        seen = poller.end()
    print(f"promoted after {promoted_s} s, the new figures shown {answer_s:.1f} s after the kill")
    print(f"(asked s, answered s, status, depth): {seen}")
    assert {status for *_, status, _ in seen} <= {200, 503}, seen  # nothing else, no hang
    assert all(shown in (3, 5) for *_, status, shown in seen if status == 200), seen
    # a request made before the promotion was held, then answered from the new primary
    assert any(asked < promoted_s and status == 200 for asked, _, status, _ in seen), seen
    for path in PAGES:
        assert httpx.get(f"{site.url}{path}", timeout=40).status_code == 200, path
    assert site.proc.poll() is None and site.proc.pid == pid  # the same process throughout
    moved = f"the primary of {SERVICE!r} is now 127.0.0.1:{new.port} (was 127.0.0.1:{old.port})"
    wait_for(lambda: moved in site.output(), timeout_s=10, what="the new primary logged")
    assert site.output().count("the primary of") == 1, site.output()
    print(site.output())


def test_an_open_page_shows_the_new_primarys_figures_by_its_live_refresh(
    cluster: SentinelCluster, site: DashboardProcess, page: Page
) -> None:
    page.goto(f"{site.url}/watchers/0")
    expect(page.locator("#depth")).to_have_text("3")
    page.evaluate("window.sameDocument = true")
    _, _, new = fail_over(cluster)
    new.client().lpush("in", "b/1", "b/2")
    expect(page.locator("#depth")).to_have_text("5", timeout=ANSWER_BOUND_S * 1000)
    assert page.evaluate("window.sameDocument") is True  # no reload
    expect(page.locator("body")).not_to_have_attribute("data-stale", "1", timeout=10_000)

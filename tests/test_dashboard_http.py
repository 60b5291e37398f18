"""The dashboard's HTTP layer, without a browser: CSRF, confirmation, read-only, access
token, password, security headers, what may be addressed, masked Redis passwords.

Each test runs the real server (``resc-dramatiq dashboard`` as a subprocess) against the
test's real Redis and talks to it with httpx.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner
from pytest_redis.executor import RedisExecutor

from resc_dramatiq import Config, Router, RuleSet
from resc_dramatiq.cli import main
from resc_dramatiq.ops.embedded import server_binary
from tests.dashboard_server import (
    RULES,
    DashboardProcess,
    csrf_of,
    dashboard,
    dead_letter,
    post,
    write_rules,
)
from tests.procs import free_port, own_redis, url_of

RULESET = RuleSet.compile(Config.from_data(RULES))


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[DashboardProcess]:
    with dashboard(write_rules(tmp_path), redis_url, tmp_path) as running:
        yield running


def test_a_post_without_the_csrf_token_is_refused_and_moves_nothing(
    r: redis.Redis, site: DashboardProcess
) -> None:
    dead_letter(r, b"a/1")
    for token in ("", "forged"):
        answer = post(site, "/watchers/0/dead", {"csrf": token, "do": "drop:all", "confirmed": "1"})
        assert answer.status_code == 403
        assert "CSRF" in answer.text
    assert r.llen("in/dead") == 1


def test_a_post_from_another_origin_is_refused_even_with_the_token(
    r: redis.Redis, site: DashboardProcess
) -> None:
    dead_letter(r, b"a/1")
    form = {"csrf": csrf_of(site), "do": "drop:all", "confirmed": "1"}
    foreign = post(site, "/watchers/0/dead", form, headers={"origin": "http://evil.example"})
    cross = post(site, "/watchers/0/dead", form, headers={"sec-fetch-site": "cross-site"})
    assert (foreign.status_code, cross.status_code) == (403, 403)
    assert r.llen("in/dead") == 1


def test_an_action_first_answers_with_a_confirmation_and_changes_nothing(
    r: redis.Redis, site: DashboardProcess
) -> None:
    dead_letter(r, b"a/1")
    answer = post(site, "/watchers/0/dead", {"csrf": csrf_of(site), "do": "drop:all"})
    assert answer.status_code == 200
    assert "Drop all 1 dead letters of in?" in answer.text
    assert 'name="confirmed" value="1"' in answer.text
    assert r.llen("in/dead") == 1


def test_a_confirmed_action_acts_and_redirects_saying_what_was_done(
    r: redis.Redis, site: DashboardProcess
) -> None:
    dead_letter(r, b"a/1")
    dead_letter(r, b"a/2")
    form = {"csrf": csrf_of(site), "do": "requeue:all", "confirmed": "1"}
    answer = post(site, "/watchers/0/dead", form)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/watchers/0?notice=2+requeued"
    assert (r.llen("in/dead"), r.lrange("in", 0, -1)) == (0, [b"a/2", b"a/1"])


def test_a_read_only_dashboard_refuses_every_action(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    dead_letter(r, b"a/1")
    r.zadd("todo", {"t": 1})
    with dashboard(write_rules(tmp_path), redis_url, tmp_path, "--read-only") as ro:
        token = csrf_of(ro)
        for path, do in (
            ("/watchers/0/dead", "drop:all"),
            ("/watchers/0/queue/dead?name=jobs", "drop:all"),
            ("/watchers/0/set/remove?key=todo", f"remove:{b't'.hex()}"),
        ):
            answer = post(ro, path, {"csrf": token, "do": do, "confirmed": "1"})
            assert answer.status_code == 403, path
            assert "read-only" in answer.text
        assert "requeue all" not in httpx.get(f"{ro.url}/watchers/0").text
    assert (r.llen("in/dead"), r.zcard("todo")) == (1, 1)


def test_with_an_access_token_nothing_is_shown_without_it(redis_url: str, tmp_path: Path) -> None:
    env = {"RESC_DASHBOARD_TOKEN": "t0ken-abc"}
    with dashboard(write_rules(tmp_path), redis_url, tmp_path, env=env) as guarded:
        assert httpx.get(f"{guarded.url}/pipeline").status_code == 401
        assert httpx.get(f"{guarded.url}/static/live.js").status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert httpx.get(f"{guarded.url}/pipeline", headers=wrong).status_code == 401
        bearer = {"authorization": "Bearer t0ken-abc"}
        assert httpx.get(f"{guarded.url}/pipeline", headers=bearer).status_code == 200


def test_the_token_in_the_address_becomes_a_cookie_and_leaves_the_address(
    redis_url: str, tmp_path: Path
) -> None:
    env = {"RESC_DASHBOARD_TOKEN": "t0ken-abc"}
    with (
        dashboard(write_rules(tmp_path), redis_url, tmp_path, env=env) as guarded,
        httpx.Client(base_url=guarded.url) as client,
    ):
        entered = client.get("/watchers/0?token=t0ken-abc&offset=5")
        assert entered.status_code == 303
        assert entered.headers["location"] == "/watchers/0?offset=5"
        assert "HttpOnly" in entered.headers["set-cookie"]
        assert client.get("/pipeline").status_code == 200  # the cookie


def test_with_a_password_basic_auth_is_asked_and_checked(redis_url: str, tmp_path: Path) -> None:
    env = {"RESC_DASHBOARD_PASSWORD": "pa55"}
    with dashboard(write_rules(tmp_path), redis_url, tmp_path, env=env) as guarded:
        refused = httpx.get(f"{guarded.url}/pipeline")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
        assert httpx.get(f"{guarded.url}/pipeline", auth=("ops", "wrong")).status_code == 401
        assert httpx.get(f"{guarded.url}/pipeline", auth=("ops", "pa55")).status_code == 200


def test_every_page_carries_a_policy_that_forbids_inline_scripts(site: DashboardProcess) -> None:
    answer = httpx.get(f"{site.url}/pipeline")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_only_queues_and_sets_the_rules_name_can_be_addressed(site: DashboardProcess) -> None:
    assert httpx.get(f"{site.url}/watchers/0/queue?name=jobs").status_code == 200
    assert httpx.get(f"{site.url}/watchers/0/queue?name=other").status_code == 404
    assert httpx.get(f"{site.url}/watchers/0/set?key=todo").status_code == 200
    assert httpx.get(f"{site.url}/watchers/0/set?key=in/stats").status_code == 404
    assert httpx.get(f"{site.url}/watchers/9").status_code == 404


def test_the_schedules_page_of_a_config_without_schedules_says_so(site: DashboardProcess) -> None:
    answer = httpx.get(f"{site.url}/schedules")
    assert answer.status_code == 200
    assert "the config has no schedules" in answer.text


def test_it_listens_on_127_0_0_1_by_default(site: DashboardProcess) -> None:
    assert f"dashboard at http://127.0.0.1:{site.port}/" in site.output()


def test_a_redis_password_is_masked_on_the_pages_and_in_the_output(tmp_path: Path) -> None:
    datadir = Path(tempfile.mkdtemp(prefix="rp"))
    server = RedisExecutor(
        server_binary(), databases=1, redis_timeout=0, loglevel="warning",
        host="127.0.0.1", port=free_port(), password="s3cret-pw", datadir=datadir,
    )  # fmt: skip
    server.start()
    try:
        url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
        with dashboard(write_rules(tmp_path), url, tmp_path) as secured:
            for path in ("/pipeline", "/watchers", "/watchers/0", "/processes"):
                html = httpx.get(f"{secured.url}{path}").text
                assert "s3cret-pw" not in html, path
                assert f"redis://:***@127.0.0.1:{server.port}/0" in html, path
            assert "s3cret-pw" not in secured.output()
    finally:
        server.stop()
        shutil.rmtree(datadir, ignore_errors=True)


def test_an_unreachable_redis_exits_1_naming_it(tmp_path: Path) -> None:
    config = str(write_rules(tmp_path))
    argv = ["dashboard", config, "--redis-url", f"redis://:pw@127.0.0.1:{free_port()}/0"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1
    assert "Redis at redis://:***@127.0.0.1:" in result.output


def test_a_dashboard_started_after_the_commits_charts_them_from_redis(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    r.lpush("in", "a/1", "a/2", "a/3")
    Router(ruleset=RULESET, client=r).run_until_idle()
    with dashboard(write_rules(tmp_path), redis_url, tmp_path) as started_later:
        html = httpx.get(f"{started_later.url}/pipeline").text
    peaks = re.findall(r"peak (\d+)/min", html)
    assert peaks[0] in ("3", "2", "1")  # the events, maybe split over two minutes


def test_a_redis_outage_answers_503_and_the_pages_come_back_after_it(tmp_path: Path) -> None:
    with (
        own_redis() as server,
        dashboard(write_rules(tmp_path), url_of(server), tmp_path) as watching,
    ):
        server.stop()
        down = httpx.get(f"{watching.url}/pipeline")
        assert down.status_code == 503
        assert down.text == "503: Redis unreachable (ConnectionError)\n"
        server.start()
        assert httpx.get(f"{watching.url}/pipeline").status_code == 200


def test_a_redis_outage_is_logged_once_and_its_end_once(tmp_path: Path) -> None:
    with (
        own_redis() as server,
        dashboard(write_rules(tmp_path), url_of(server), tmp_path) as watching,
    ):
        server.stop()
        for _ in range(3):
            assert httpx.get(f"{watching.url}/pipeline").status_code == 503
        server.start()
        assert httpx.get(f"{watching.url}/pipeline").status_code == 200
        assert httpx.get(f"{watching.url}/processes").status_code == 200
        log = watching.output()
    assert log.count("dashboard: Redis unreachable (ConnectionError)") == 1, log
    assert log.count("dashboard: Redis reachable again") == 1, log

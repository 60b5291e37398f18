"""The dashboard's trust boundary: the Host it answers to (DNS rebinding), the Origin of
an action, the redirects it answers with, the token cookie read as browsers write it,
and a port in use.

The real server (``resc-dramatiq dashboard`` as a subprocess) against the test's Redis.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner
from starlette.datastructures import Headers

from resc_dramatiq.cli import main
from resc_dramatiq.dashboard.hosts import LOOPBACK, AllowedHosts, hosts_for
from resc_dramatiq.dashboard.security import action_refusal
from tests.dashboard_server import DashboardProcess, csrf_of, dashboard, dead_letter, write_rules
from tests.procs import free_port

TOKEN = "t0ken-abc"


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[DashboardProcess]:
    with dashboard(write_rules(tmp_path), redis_url, tmp_path) as running:
        yield running


def rebound(site: DashboardProcess, name: str = "attacker.example") -> dict[str, str]:
    """The headers a browser sends from a page of ``name`` resolved to 127.0.0.1."""
    return {"host": f"{name}:{site.port}", "origin": f"http://{name}:{site.port}"}


def test_a_dns_rebinding_action_is_refused_by_its_host_and_moves_nothing(
    r: redis.Redis, site: DashboardProcess
) -> None:
    dead_letter(r, b"a/1")
    entry = r.lindex("in/dead", 0)
    assert isinstance(entry, bytes)
    form = {"csrf": csrf_of(site), "do": f"requeue:{entry.hex()}", "confirmed": "1"}
    answer = httpx.post(f"{site.url}/watchers/0/dead", data=form, headers=rebound(site))
    assert answer.status_code == 400
    assert answer.text == "400: Host not allowed (see --allowed-host)\n"
    assert (r.llen("in/dead"), r.llen("in")) == (1, 0)


def test_a_dns_rebinding_page_reads_nothing(site: DashboardProcess) -> None:
    for path in ("/pipeline", "/watchers/0", "/static/live.js", "/"):
        answer = httpx.get(f"{site.url}{path}", headers=rebound(site))
        assert answer.status_code == 400, path
        assert "csrf" not in answer.text


def test_a_foreign_host_is_refused_even_with_the_access_token(
    redis_url: str, tmp_path: Path
) -> None:
    env = {"RESC_DASHBOARD_TOKEN": TOKEN}
    with dashboard(write_rules(tmp_path), redis_url, tmp_path, env=env) as guarded:
        foreign = {"host": f"attacker.example:{guarded.port}"}
        bearer = {**foreign, "authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{guarded.url}/pipeline", headers=bearer).status_code == 400
        entering = httpx.get(f"{guarded.url}/pipeline?token={TOKEN}", headers=foreign)
        assert entering.status_code == 400
        assert "set-cookie" not in entering.headers


def test_the_loopback_names_with_the_port_are_answered(site: DashboardProcess) -> None:
    for name in ("localhost", "127.0.0.1", "[::1]", "LOCALHOST"):
        answer = httpx.get(f"{site.url}/pipeline", headers={"host": f"{name}:{site.port}"})
        assert answer.status_code == 200, name


def test_an_allowed_host_is_answered_and_may_act(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    dead_letter(r, b"a/1")
    config = write_rules(tmp_path)
    with dashboard(config, redis_url, tmp_path, "--allowed-host", "dash.example") as named:
        headers = rebound(named, "dash.example")
        token = csrf_of(named, headers=headers)
        form = {"csrf": token, "do": "requeue:all", "confirmed": "1"}
        answer = httpx.post(f"{named.url}/watchers/0/dead", data=form, headers=headers)
        assert answer.status_code == 303
        assert httpx.get(f"{named.url}/pipeline", headers=rebound(named)).status_code == 400
    assert r.lrange("in", 0, -1) == [b"a/1"]


def test_the_origin_is_compared_with_the_allowed_hosts_not_with_the_callers_host() -> None:
    hosts = AllowedHosts(hosts_for("127.0.0.1", 7401))
    same_foreign = Headers(
        {"host": "attacker.example:7401", "origin": "http://attacker.example:7401"}
    )
    own = Headers({"host": "127.0.0.1:7401", "origin": "http://127.0.0.1:7401"})
    refusal = action_refusal(same_foreign, "c", "c", read_only=False, hosts=hosts)
    assert refusal == "request from another origin refused"
    assert action_refusal(own, "c", "c", read_only=False, hosts=hosts) is None
    null = Headers({"host": "127.0.0.1:7401", "origin": "null"})
    assert action_refusal(null, "c", "c", read_only=False, hosts=hosts) is not None


def test_allowed_hosts_are_names_with_an_optional_port() -> None:
    hosts = AllowedHosts((*hosts_for("::1", 8060), "dash.example", "other.example:443"))
    assert hosts.allows("[::1]:8060") and hosts.allows("dash.example:9999")
    assert hosts.allows("dash.example") and hosts.allows("other.example:443")
    assert not hosts.allows("other.example:444") and not hosts.allows("localhost:8061")
    assert not hosts.allows("localhost:8060@evil.example") and not hosts.allows("")
    assert AllowedHosts(LOOPBACK).allows("localhost:1234")  # the app factory's default


def test_a_malformed_allowed_host_is_a_usage_error(tmp_path: Path) -> None:
    argv = ["dashboard", str(write_rules(tmp_path)), "--allowed-host", "a/b"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert "--allowed-host" in result.output and "'a/b'" in result.output


@pytest.mark.parametrize("path", ["//evil.example/", "/%5Cevil.example/", "/\\evil.example/"])
def test_entering_with_the_token_redirects_only_to_a_path_of_its_own(
    redis_url: str, tmp_path: Path, path: str
) -> None:
    env = {"RESC_DASHBOARD_TOKEN": TOKEN}
    with dashboard(write_rules(tmp_path), redis_url, tmp_path, env=env) as guarded:
        url = httpx.URL(f"{guarded.url}/").copy_with(raw_path=f"{path}?token={TOKEN}".encode())
        answer = httpx.get(url)
    location = answer.headers["location"]
    assert answer.status_code == 303
    assert location.startswith("/") and location[1:2] not in ("/", "\\"), location
    assert httpx.URL(f"http://127.0.0.1:1{location}").host == "127.0.0.1"


def test_the_token_cookie_is_read_beside_a_cookie_a_strict_parser_refuses(
    redis_url: str, tmp_path: Path
) -> None:
    env = {"RESC_DASHBOARD_TOKEN": TOKEN}
    with dashboard(write_rules(tmp_path), redis_url, tmp_path, env=env) as guarded:
        cookie = {"cookie": f"x=a b; resc_dashboard_token={TOKEN}"}
        assert httpx.get(f"{guarded.url}/pipeline", headers=cookie).status_code == 200
        wrong = {"cookie": "x=a b; resc_dashboard_token=nope"}
        assert httpx.get(f"{guarded.url}/pipeline", headers=wrong).status_code == 401


def test_a_port_in_use_is_said_without_claiming_to_serve(redis_url: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", free_port())) as taken:
        port = taken.getsockname()[1]
        argv = ["dashboard", str(write_rules(tmp_path)), "--redis-url", redis_url]
        result = CliRunner().invoke(main, [*argv, "--port", str(port)])
    assert result.exit_code == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "dashboard at" not in result.output

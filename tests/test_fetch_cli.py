"""The ``router`` command with fetchers, as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from resc_dramatiq.cli import main
from tests.helpers import wait_for
from tests.procs import CLI, routers


def write(tmp_path: Path, url: str, headers: dict[str, str]) -> Path:
    rule: dict[str, Any] = {
        "on": r"^trt/(?P<process>\w+)/(?P<product>\w+)$",
        "fetch": [{"url": url, "returns": "c", "headers": headers}],
        "make": {"task": "prop/${process}/${c.child}", "queue": "props"},
    }
    path = tmp_path / "fetch.json"
    path.write_text(json.dumps({"watchers": [{"input_queue": "in", "rules": [rule]}]}))
    return path


def test_the_router_command_fetches_with_the_token_from_its_environment(
    r: redis.Redis,
    redis_url: str,
    httpserver: HTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    httpserver.expect_request(
        "/products/456/children", headers={"Authorization": "Bearer tok-77"}
    ).respond_with_json([{"child": "11"}, {"child": "12"}])
    monkeypatch.setenv("CATALOGUE_TOKEN", "tok-77")
    url = httpserver.url_for("/products/${product}/children")
    config = write(tmp_path, url, {"Authorization": "Bearer ${env:CATALOGUE_TOKEN}"})
    r.lpush("in", "trt/123/456")
    with routers(config=config, redis_url=redis_url, log=tmp_path / "router.log") as start:
        process = start(extra=("--log-level", "debug"))
        wait_for(lambda: r.llen("props") == 2, what="the children's tasks")
        assert process.signal(signal.SIGTERM) == 0
    assert r.lrange("props", 0, -1) == [b"prop/123/12", b"prop/123/11"]
    assert "tok-77" not in process.output()


def test_an_unset_token_variable_stops_the_router_at_start_with_exit_2(tmp_path: Path) -> None:
    config = write(tmp_path, "http://127.0.0.1:9/", {"Authorization": "${env:RESC_UNSET_TOKEN}"})
    result = subprocess.run(
        [CLI, "router", str(config), "--redis-url", "redis://127.0.0.1:9/0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "fetch[0].headers.Authorization: environment variable RESC_UNSET_TOKEN is not set" in (
        result.stderr
    )


def test_check_warns_of_an_unset_token_variable_but_accepts_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESC_UNSET_TOKEN", raising=False)
    config = write(tmp_path, "http://127.0.0.1:9/", {"Authorization": "${env:RESC_UNSET_TOKEN}"})
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 0
    assert "environment variable RESC_UNSET_TOKEN is not set here" in result.stderr
    assert "valid" in result.stdout


def test_check_refuses_a_rule_variable_in_a_header_with_its_location(tmp_path: Path) -> None:
    config = write(tmp_path, "http://127.0.0.1:9/", {"X-Product": "${product}"})
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 2
    assert "fetch[0].headers.X-Product: headers take ${env:NAME} only" in result.stderr


def test_check_refuses_a_variable_in_a_fetch_urls_host_naming_the_rule_and_the_url(
    tmp_path: Path,
) -> None:
    url = "http://${process}/products/${product}"
    config = write(tmp_path, url, {"Authorization": "Bearer ${env:CAT_TOKEN}"})
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 2
    assert f"rule '<anonymous rule>', fetch[0].url '{url}': a variable before its path" in (
        result.stderr
    )

"""Sentinel clients and the wait option, on a real primary, replica and three Sentinels."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from resc_dramatiq import Config, Router, RouterOptions, build_ruleset, connect
from resc_dramatiq.cli import main
from tests.procs import free_port
from tests.sentinel import sentinel_cluster

RULES = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [{"on": r"^acq/(?P<n>\d+)$", "make": {"task": "t/${n}", "queue": "out"}}],
        }
    ]
}


def router(client: redis.Redis, **options: int) -> Router:
    ruleset = build_ruleset(Config.from_data(RULES), None)
    return Router(ruleset=ruleset, client=client, options=RouterOptions(batch_size=10, **options))


def test_a_sentinel_url_reaches_the_primary_and_names_it_when_printed() -> None:
    with sentinel_cluster() as cluster:
        client = connect(cluster.url)
        client.set("k", "v")
        assert cluster.primary().client().get("k") == b"v"
        assert client.connection_pool.master_address == ("127.0.0.1", cluster.primary().port)
        client.close()


def test_a_blocking_command_in_flight_follows_the_failover_by_itself() -> None:
    with sentinel_cluster() as cluster:
        client = connect(cluster.url)
        client.lpush("a", "before")
        assert client.blmove("a", "b", 1, "RIGHT", "LEFT") == b"before"
        old = cluster.kill_primary()
        killed = time.monotonic()
        # one call: the client retries it at the address the Sentinels give, not the old one
        assert client.blmove("a", "b", 1, "RIGHT", "LEFT") in (None, b"before")
        assert time.monotonic() - killed < 15
        assert client.connection_pool.master_address != ("127.0.0.1", old.port)
        client.close()


def test_with_the_wait_option_the_router_commits_nothing_more_until_the_replica_has_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with sentinel_cluster() as cluster:
        client = connect(cluster.url)
        replica = next(s for s in cluster.servers if s.port != cluster.primary_port())
        client.lpush("in", "acq/1")
        asleep = threading.Thread(
            target=replica.client().execute_command, args=("DEBUG", "SLEEP", 1)
        )
        asleep.start()  # the replica takes nothing in for a second
        began = time.monotonic()
        assert router(client, wait_replicas=1, wait_timeout_ms=10_000).run_until_idle() == 1
        assert time.monotonic() - began > 0.7
        assert replica.client().lrange("out", 0, -1) == [b"t/1"]
        assert "replica(s) acknowledged" not in caplog.text
        asleep.join()
        client.close()


def test_a_wait_that_times_out_is_logged_once_and_routing_goes_on(
    r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    r.lpush("in", *(f"acq/{i}" for i in range(50)))  # the test server has no replica
    with caplog.at_level(logging.WARNING):
        assert router(r, wait_replicas=1, wait_timeout_ms=20).run_until_idle() == 50
    assert r.llen("out") == 50
    shortfalls = [m for m in caplog.messages if "only 0 of 1 replica(s)" in m]
    assert len(shortfalls) == 1, caplog.messages


def test_push_that_waits_for_a_missing_replica_exits_1(redis_url: str, r: redis.Redis) -> None:
    args = ["push", "--redis-url", redis_url, "--wait-replicas", "1", "--wait-timeout-ms", "20"]
    result = CliRunner().invoke(main, [*args, "in", "acq/1"])
    assert result.exit_code == 1, result.output
    assert "only 0 of 1 replica(s) acknowledged the push" in result.output
    assert r.llen("in") == 1  # on the primary all the same


def test_the_router_command_refuses_a_sentinel_url_without_a_service(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"watchers": [{"input_queue": "in", "rules": []}]}')
    result = CliRunner().invoke(main, ["router", str(config), "--redis-url", "redis+sentinel://h"])
    assert result.exit_code == 2, result.output
    assert "invalid Redis URL redis+sentinel://h: no service name" in result.output


def test_the_new_primary_is_logged_once_by_a_router_that_follows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with sentinel_cluster() as cluster:
        client = connect(cluster.url)
        routing = router(client)
        routing.heartbeat()
        routing.primary.check()
        old = cluster.kill_primary()
        new = cluster.wait_for_new_primary(old)
        with caplog.at_level(logging.WARNING):
            routing.heartbeat()  # the client follows by itself
            assert routing.primary.check()
            routing.heartbeat()
            assert not routing.primary.check()
        moved = [m for m in caplog.messages if "is now" in m]
        assert moved == [
            f"router {routing.instance}: the primary of 'primary' is now 127.0.0.1:{new.port}"
            f" (was 127.0.0.1:{old.port}); following it"
        ]
        client.close()


def test_every_command_reaches_the_primary_through_a_sentinel_url(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps(RULES))
    with sentinel_cluster() as cluster:
        url = cluster.url
        run = CliRunner().invoke
        assert run(main, ["push", "--redis-url", url, "in", "acq/1", "acq/2"]).exit_code == 0
        assert cluster.primary().client().llen("in") == 2
        status = run(main, ["status", str(config), "--redis-url", url, "--json"])
        assert status.exit_code == 0, status.output
        assert json.loads(status.output)[0]["depth"] == 2
        dead = run(main, ["dead", "list", str(config), "--redis-url", url, "--json"])
        assert dead.exit_code == 0, dead.output
        prune = run(main, ["prune", str(config), "--redis-url", url, "--dry-run"])
        assert prune.exit_code == 0, prune.output


def test_a_sentinel_that_is_down_is_skipped_at_once() -> None:
    with sentinel_cluster() as cluster:
        dead = free_port()
        url = cluster.url.replace("redis+sentinel://", f"redis+sentinel://127.0.0.1:{dead},")
        client = connect(url)
        began = time.monotonic()
        assert client.ping()
        assert time.monotonic() - began < 1.0
        client.close()

"""connect(url): every URL form into a client; unreadable URLs refused, password masked."""

from __future__ import annotations

import time

import pytest
import redis
from click.testing import CliRunner
from redis.cluster import ClusterNode
from redis.sentinel import SentinelConnectionPool

from resc_dramatiq import RedisURLError, connect
from resc_dramatiq.cli import main
from resc_dramatiq.store.connect import (
    FAILOVER_RETRIES,
    FailoverRidingCluster,
    connect_cluster,
    is_cluster,
    url_of,
)
from resc_dramatiq.store.urls import parse_cluster, parse_sentinel, safe_url
from tests.cluster import LocalCluster
from tests.procs import free_port


def test_a_plain_url_gives_a_working_client(redis_url: str) -> None:
    client = connect(redis_url)
    assert client.ping()
    client.close()


def test_options_reach_the_client(redis_url: str) -> None:
    client = connect(redis_url, decode_responses=True)
    client.set("k", "v")
    assert client.get("k") == "v"
    client.close()


def test_a_sentinel_url_lists_its_sentinels_service_and_db() -> None:
    target = parse_sentinel("redis+sentinel://u:p%40ss@h1:26380,h2,[::1]:5000/mymaster/3")
    assert target.sentinels == (("h1", 26380), ("h2", 26379), ("::1", 5000))
    assert (target.service, target.db, target.username, target.password) == (
        "mymaster",
        3,
        "u",
        "p@ss",
    )
    assert not target.ssl


def test_sentinel_credentials_and_tls_come_from_the_query_and_the_scheme() -> None:
    target = parse_sentinel(
        "rediss+sentinel://:secret@h:1/svc?sentinel_password=s3&sentinel_username=sv"
    )
    assert target.ssl
    assert (target.password, target.sentinel_password, target.sentinel_username) == (
        "secret",
        "s3",
        "sv",
    )
    assert target.db == 0


def test_a_sentinel_url_gives_a_client_that_asks_the_sentinels() -> None:
    client = connect("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/2?sentinel_password=x")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "svc"
    assert pool.connection_kwargs["db"] == 2
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "x"
    assert url_of(client) == "redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/2"


def test_a_cluster_url_lists_its_startup_nodes_and_credentials() -> None:
    target = parse_cluster("redis+cluster://u:p%40ss@h1:7000,h2,[::1]:7002")
    assert target.nodes == (("h1", 7000), ("h2", 6379), ("::1", 7002))
    assert (target.username, target.password, target.ssl) == ("u", "p@ss", False)


def test_a_cluster_url_may_name_database_0_and_tls() -> None:
    assert parse_cluster("rediss+cluster://:secret@h:1/0").ssl
    assert parse_cluster("redis+cluster://h:1?db=0").password is None


def test_a_cluster_url_gives_a_cluster_client_that_rides_failovers(
    cluster: LocalCluster,
) -> None:
    client = connect(cluster.url)
    assert isinstance(client, FailoverRidingCluster)
    assert is_cluster(client)
    assert client.call_retry._retries == FAILOVER_RETRIES  # get_retries(): redis-py 6+
    node = client.get_nodes()[0].redis_connection
    assert node is not None
    assert node.connection_pool.connection_kwargs["socket_keepalive"] is True
    assert client.ping()
    client.close()


def test_a_command_to_a_named_node_that_is_gone_is_not_retried(cluster: LocalCluster) -> None:
    client = connect_cluster(cluster.url)
    gone = ClusterNode("127.0.0.1", free_port())
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping(target_nodes=gone)
    assert time.monotonic() - started < 1.0
    client.close()


def test_a_plain_client_is_no_cluster(redis_url: str) -> None:
    client = connect(redis_url)
    assert not is_cluster(client)
    client.close()


def test_an_unreachable_cluster_is_a_connection_error_naming_the_masked_url() -> None:
    url = f"redis+cluster://u:hunter2@127.0.0.1:{free_port()}"
    with pytest.raises(redis.ConnectionError) as caught:
        connect(url)
    assert "hunter2" not in str(caught.value)
    assert "Redis Cluster at redis+cluster://u:***@127.0.0.1:" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://h:1/3", "has only database 0, not 3"),
        ("redis+cluster://h:1?db=2", "has only database 0, not 2"),
        ("redis+cluster://h:1,,h:2", "an empty node address"),
        ("redis+cluster://h:0", "bad port in node address 'h:0'"),
        ("redis+cluster://h:1?read_from_replicas=1", "unknown option(s) read_from_replicas"),
        ("redis+cluster://h:1/zero", "must be a number"),
        ("redis+sentinel://h:1", "no service name"),
        ("redis+sentinel://h:1,/svc", "empty Sentinel address"),
        ("redis+sentinel://h:99999/svc", "bad port"),
        ("redis+sentinel://h:1/svc/zero", "must be a number"),
        ("redis+sentinel://h:1/svc?sentinel_pasword=x", "unknown option(s) sentinel_pasword"),
        ("http://h:1/0", "invalid Redis URL http://h:1/0"),
    ],
)
def test_an_unreadable_url_is_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(RedisURLError, match="invalid Redis URL") as caught:
        connect(url)
    assert why in str(caught.value)


def test_the_error_masks_every_password() -> None:
    with pytest.raises(RedisURLError) as caught:
        connect("redis+sentinel://u:hunter2@h:1?sentinel_password=s3cret")
    message = str(caught.value)
    assert "hunter2" not in message and "s3cret" not in message
    assert "u:***@h:1" in message and "sentinel_password=***" in message


def test_a_cluster_url_error_masks_the_password() -> None:
    with pytest.raises(RedisURLError) as caught:
        connect("rediss+cluster://u:hunter2@h1:1,h2:2/5")
    assert str(caught.value) == (
        "invalid Redis URL rediss+cluster://u:***@h1:1,h2:2/5: "
        "a Redis Cluster has only database 0, not 5"
    )


def test_safe_url_masks_userinfo_and_password_query_parameters() -> None:
    assert safe_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert safe_url("redis://h:1/0?password=pw&db=1") == "redis://h:1/0?password=***&db=1"
    assert safe_url("unix://u:pw@/tmp/r.sock?db=1") == "unix://u:***@/tmp/r.sock?db=1"
    assert safe_url("redis://h:1/0") == "redis://h:1/0"
    assert safe_url("redis+cluster://:pw@h1:1,h2:2") == "redis+cluster://:***@h1:1,h2:2"


def test_the_cli_exits_2_naming_the_masked_url(write_config: object) -> None:
    config = write_config('{"watchers": [{"input_queue": "in", "rules": []}]}')  # type: ignore[operator]
    url = "redis+sentinel://:hunter2@h:1"
    result = CliRunner().invoke(main, ["status", str(config), "--redis-url", url])
    assert result.exit_code == 2, result.output
    assert "invalid Redis URL redis+sentinel://:***@h:1: no service name" in result.output
    assert "hunter2" not in result.output

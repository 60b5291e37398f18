"""connect(url): every URL form into a client; unreadable URLs refused, password masked."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from redis.sentinel import SentinelConnectionPool

from resc_dramatiq import RedisURLError, connect
from resc_dramatiq.cli import main
from resc_dramatiq.store.connect import parse_sentinel, safe_url, url_of


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


@pytest.mark.parametrize(
    ("url", "why"),
    [
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


def test_safe_url_masks_userinfo_and_password_query_parameters() -> None:
    assert safe_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert safe_url("redis://h:1/0?password=pw&db=1") == "redis://h:1/0?password=***&db=1"
    assert safe_url("unix://u:pw@/tmp/r.sock?db=1") == "unix://u:***@/tmp/r.sock?db=1"
    assert safe_url("redis://h:1/0") == "redis://h:1/0"


def test_the_cli_exits_2_naming_the_masked_url(write_config: object) -> None:
    config = write_config('{"watchers": [{"input_queue": "in", "rules": []}]}')  # type: ignore[operator]
    url = "redis+sentinel://:hunter2@h:1"
    result = CliRunner().invoke(main, ["status", str(config), "--redis-url", url])
    assert result.exit_code == 2, result.output
    assert "invalid Redis URL redis+sentinel://:***@h:1: no service name" in result.output
    assert "hunter2" not in result.output

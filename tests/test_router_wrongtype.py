"""Keys of the wrong Redis type, and the per-rule counters of the commit script.

A config that points at a key holding another type gets one clear error, its batch
kept whole (nothing half-written), no crash loop, and resumes once the key is fixed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from resc_dramatiq import Router, RouterOptions
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import WrongType
from resc_dramatiq.router.router import stats
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.store.keys import WatcherKeys
from tests.helpers import one_round, wait_for

TWO_TARGETS = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [
                {
                    "name": "fan-out",
                    "on": r"^job/(?P<id>\d+)$",
                    "make": [
                        {"task": "a/${id}", "queue": "first", "set": "first-set"},
                        {"task": "b/${id}", "queue": "second", "set": "second-set"},
                    ],
                }
            ],
        }
    ]
}


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    yield
    r.connection_pool.disconnect()


def router_on(r: redis.Redis, data: dict[str, Any] = TWO_TARGETS) -> Router:
    ruleset = RuleSet.compile(Config.from_data(data))
    return Router(ruleset=ruleset, client=r, instance="me", options=RouterOptions(block_s=0.1))


def test_a_target_of_the_wrong_type_refuses_the_commit_and_names_key_type_and_rule(
    r: redis.Redis,
) -> None:
    r.hset("second", "field", "value")
    r.lpush("in", "job/1")
    router = router_on(r)
    with pytest.raises(WrongType) as refused:
        router.run_until_idle()
    message = str(refused.value)
    assert "'second' holds a hash" in message
    assert "writes a list" in message
    assert "'fan-out'" in message


def test_a_refused_commit_writes_nothing_at_all(r: redis.Redis) -> None:
    r.hset("second", "field", "value")
    r.lpush("in", "job/1")
    with pytest.raises(WrongType):
        router_on(r).run_until_idle()
    # the first make's set and list come before the bad key: still untouched
    assert r.exists("first", "first-set", "second-set", "in/stats") == 0
    assert r.lrange(WatcherKeys.of(router_on(r).loops[0].spec, "me").taken, 0, -1) == [b"job/1"]


def test_a_dedup_set_of_the_wrong_type_is_refused_too(r: redis.Redis) -> None:
    r.set("first-set", "a string")
    r.lpush("in", "job/1")
    with pytest.raises(WrongType, match=r"'first-set' holds a string, .* writes a zset"):
        router_on(r).run_until_idle()


def test_a_running_router_logs_the_refusal_once_and_resumes_when_the_key_is_fixed(
    r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    r.hset("second", "field", "value")
    r.lpush("in", "job/1", "job/2")
    router = router_on(r)
    thread = threading.Thread(target=router.run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="resc_dramatiq"):
        thread.start()
        try:
            wait_for(lambda: router.loops[0].blocked is not None, timeout_s=10)
            # a few retries go by: no second error, no restart, no exit
            thread.join(2.5)
            assert thread.is_alive()
            assert router.failed is None
            r.delete("second")
            wait_for(lambda: r.llen("second") == 2, timeout_s=40)
        finally:
            router.stop()
            thread.join(10)
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "'second' holds a hash" in errors[0].getMessage()
    assert "died" not in caplog.text
    assert sorted(r.lrange("first", 0, -1)) == [b"a/1", b"a/2"]
    assert r.zcard("first-set") == r.zcard("second-set") == 2
    assert router.loops[0].blocked is None


def test_each_rule_counts_its_queued_deduplicated_and_retried_tasks(r: redis.Redis) -> None:
    data = {
        "watchers": [
            {
                "input_queue": "in",
                "max_attempts": 3,
                "rules": [
                    {"name": "copy", "on": r"^job/(?P<id>\d+)$", "make": {"queue": "out"}},
                    {
                        "name": "once",
                        "on": r"^job/(?P<id>\d+)$",
                        "make": {"task": "t/${id}", "queue": "once", "set": "once-set"},
                    },
                    {"name": "picky", "on": r"^bad/(?P<q>.*)$", "make": {"queue": "${q}"}},
                ],
            }
        ]
    }
    r.lpush("in", "job/1", "job/2", "job/1", "bad/")
    one_round(router_on(r, data).loops[0])
    counters = stats(r, router_on(r, data).loops[0].keys)
    assert counters["copy|matched"] == 3
    assert counters["copy|queued"] == 3
    assert "copy|deduplicated" not in counters
    assert counters["once|queued"] == 2
    assert counters["once|deduplicated"] == 1
    assert counters["picky|retried"] == 1
    assert counters["queued"] == 5
    assert counters["deduplicated"] == 1

"""The per-minute history: written by the router's commit beside the totals, bounded in
time, read back by the dashboard as an hour of minutes."""

from __future__ import annotations

import time

import redis

from resc_dramatiq import Config, Router, RuleSet
from resc_dramatiq.dashboard.history import read_history
from resc_dramatiq.store.keys import HISTORY_TTL_S, WatcherKeys
from resc_dramatiq.store.keyspace import counters
from tests.dashboard_server import RULES

RULESET = RuleSet.compile(Config.from_data(RULES))
KEYS = WatcherKeys.of(RULESET.watchers[0].spec, "")


def route(r: redis.Redis, *events: str) -> None:
    r.lpush("in", *events)
    Router(ruleset=RULESET, client=r).run_until_idle()


def this_minute() -> int:
    return int(time.time()) // 60


def test_a_commit_adds_its_counters_to_the_hash_of_its_minute(r: redis.Redis) -> None:
    minute = this_minute()
    route(r, "a/1", "a/2", "a/1", "/bad", "job/3", "zzz")
    if this_minute() != minute:  # the routing straddled a minute: the sum is what counts
        merged: dict[str, int] = {}
        for m in (minute, this_minute()):
            for k, v in counters(r, KEYS.history_at(m)).items():
                merged[k] = merged.get(k, 0) + v
        assert merged == counters(r, KEYS.stats)
        return
    history = counters(r, KEYS.history_at(minute))
    assert history == counters(r, KEYS.stats)
    assert history["events"] == 6
    assert (history["split|queued"], history["split|deduplicated"]) == (3, 1)  # job/3 too
    assert (history["split|dead"], history["unmatched"]) == (1, 1)


def test_the_hash_of_a_minute_expires(r: redis.Redis) -> None:
    route(r, "a/1")
    ttls = [r.ttl(KEYS.history_at(m)) for m in (this_minute() - 1, this_minute())]
    assert any(0 < t <= HISTORY_TTL_S for t in ttls)


def test_commits_of_one_minute_add_up(r: redis.Redis) -> None:
    for i in range(3):
        route(r, f"a/{i}")
    now = time.time()
    history = read_history(r, KEYS, now, minutes=2)
    assert history.total("events") == 3
    assert history.total("split|queued") == 3


def test_an_hour_is_read_oldest_first_up_to_the_current_minute(r: redis.Redis) -> None:
    now_s = 1_800_000_000.0
    last = int(now_s) // 60
    r.hset(KEYS.history_at(last), "events", 7)
    r.hset(KEYS.history_at(last - 59), "events", 1)
    r.hset(KEYS.history_at(last - 60), "events", 100)  # an hour and a minute ago: left out
    history = read_history(r, KEYS, now_s)
    series = history.series("events")
    assert (len(series), series[0], series[-1], sum(series)) == (60, 1, 7, 8)
    assert history.first_minute == last - 59


def test_a_rate_is_the_mean_of_the_last_full_minutes(r: redis.Redis) -> None:
    now_s = 1_800_000_000.0
    last = int(now_s) // 60
    for back, count in ((1, 10), (2, 20), (5, 30), (6, 1000)):
        r.hset(KEYS.history_at(last - back), "queued", count)
    r.hset(KEYS.history_at(last), "queued", 500)  # the current minute is not full yet
    assert read_history(r, KEYS, now_s).rate_per_min("queued") == 12.0

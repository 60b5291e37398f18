"""``release: never``: a task stays in its dedup set after it ran, until ``ttl_s`` prunes
it, so a repeat of its event is dropped for that window ("once per key for a day")."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq import Completion, Config, ConfigError, Registry, Router, RuleSet
from resc_dramatiq.store.housekeeping import Pruner
from tests.helpers import running, wait_for

RULE = {
    "name": "transcode once a day",
    "on": r"^upload/(?P<video>\w+)$",
    "make": {
        "actor": "transcode",
        "task": "transcode/${video}",
        "set": "transcoded",
        "release": "never",
        "ttl_s": 86400,
    },
}
CONFIG = Config.from_data({"watchers": [{"input_queue": "global/done", "rules": [RULE]}]})


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    b = RedisBroker(url=redis_url)
    b.add_middleware(Completion(), before=Retries)
    yield b
    b.client.connection_pool.disconnect()


def test_a_repeat_is_dropped_for_the_window_and_let_through_after(
    broker: RedisBroker, r: redis.Redis
) -> None:
    @dramatiq.actor(broker=broker, done_event=False)
    def transcode(video: str) -> None:
        r.hincrby("runs", video, 1)

    ruleset = RuleSet.compile(CONFIG)
    router = Router(ruleset=ruleset, client=r)  # type: ignore[arg-type]

    def upload(video: str) -> None:
        r.lpush("global/done", f"upload/{video}")
        router.run_until_idle()

    with running(broker):
        upload("v1")
        wait_for(lambda: r.hget("runs", "v1") == b"1")
        broker.join(transcode.queue_name)
        assert r.zscore("transcoded", "transcode/v1") is not None  # kept after the run
        upload("v1")  # a repeat within the window: dropped
        assert r.hget("global/done/stats", "deduplicated") == b"1"
        r.zadd("transcoded", {"transcode/v1": time.time() - 86401})  # the day has passed
        [pruned] = Pruner(ruleset=ruleset, client=r).step()
        assert pruned.removed == 1
        upload("v1")  # after the window: queued again
        wait_for(lambda: r.hget("runs", "v1") == b"2")


def test_release_never_needs_a_set_and_a_window() -> None:
    make = {k: v for k, v in RULE["make"].items() if k != "ttl_s"}  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="release: never keeps a task in its dedup set"):
        Config.from_data({"watchers": [{"input_queue": "d", "rules": [{**RULE, "make": make}]}]})
    with pytest.raises(ConfigError, match="release='never' keeps a task in its set"):

        @Registry().on_done(r"^upload/(?P<video>\w+)$", set="s", release="never")
        def transcode(video: str) -> None: ...

"""Leaf actors: a declared leaf (``done_event=False``) and, in workers routing inline, a
done event no rule matches are not written; both are counted (``leaf``) where
``status`` shows them. Real workers on the kit's server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from click.testing import CliRunner
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq import Registry
from resc_dramatiq.cli import main
from resc_dramatiq.testing import Pipeline

REG = Registry()
DONE = "global/done"


@pytest.fixture(autouse=True)
def _clear_registry() -> Iterator[None]:
    yield
    REG.clear()


def chain(broker: RedisBroker, *, publish_is_leaf: bool) -> dict[str, Any]:
    """``scan`` -> ``publish`` (a leaf, declared or not); ``audit`` is never a target."""

    @dramatiq.actor(broker=broker, done_event="scan/${n}")
    def scan(n: int) -> None: ...

    @REG.on_done(r"^scan/(?P<n>\d+)$")
    @dramatiq.actor(broker=broker, done_event=False if publish_is_leaf else "pub/${n}")
    def publish(n: str) -> None: ...

    return {"scan": scan, "publish": publish}


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "no rule matches"])
def test_a_leaf_writes_no_done_event_in_the_worker_and_is_counted(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline], declared: bool
) -> None:
    actors = chain(resc_broker, publish_is_leaf=declared)
    pipeline = resc_pipeline(inline=True)
    for n in range(5):
        actors["scan"].send(n)
    pipeline.run_until_idle()
    assert pipeline.counts() == {"scan": 5, "publish": 5}
    pipeline.close()  # the worker's last counts are written as it stops
    stats = pipeline.stats()
    # scan's events were routed inline (5 matched); publish's were not written at all
    assert (stats["events"], stats["unmatched"], stats["leaf"]) == (5, 0, 5)
    assert pipeline.client.llen(DONE) == 0


def test_through_the_router_only_a_declared_leaf_is_left_out(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    actors = chain(resc_broker, publish_is_leaf=False)
    pipeline = resc_pipeline(inline=False)  # the worker knows no rules: it writes them all
    for n in range(3):
        actors["scan"].send(n)
    pipeline.run_until_idle()
    pipeline.close()
    stats = pipeline.stats()
    assert (stats["events"], stats["unmatched"], stats["leaf"]) == (6, 3, 0)


def test_a_watcher_keeping_unmatched_events_still_gets_them(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    actors = chain(resc_broker, publish_is_leaf=False)
    config = tmp_path / "rules.json"
    config.write_text(json.dumps({"watchers": [{"input_queue": DONE, "unmatched_queue": "kept"}]}))
    pipeline = resc_pipeline(rules=config, inline=True)
    actors["scan"].send(1)
    pipeline.run_until_idle()
    assert pipeline.client.lrange("kept", 0, -1) == [
        b"publish/1"
    ]  # a rule-made message's done event: its task
    pipeline.close()
    assert pipeline.stats()["leaf"] == 0


def test_status_shows_the_leaf_count(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    actors = chain(resc_broker, publish_is_leaf=True)
    pipeline = resc_pipeline(inline=True)
    actors["scan"].send(1)
    pipeline.run_until_idle()
    pipeline.close()
    config = tmp_path / "rules.json"
    config.write_text(json.dumps({"watchers": [{"input_queue": DONE}]}))
    url = resc_broker.client.connection_pool.connection_kwargs
    redis_url = f"redis://{url['host']}:{url['port']}/{url.get('db', 0)}"
    shown = CliRunner().invoke(main, ["status", str(config), "--redis-url", redis_url])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"not written \(leaf\)\s+│\s+1 │", shown.output), shown.output
    as_json = CliRunner().invoke(main, ["status", str(config), "--redis-url", redis_url, "--json"])
    assert json.loads(as_json.stdout)[0]["counters"]["leaf"] == 1

"""Lineage in an app written in code (``@on_done``, no config file): ``keep_lineage()``
turns records on for its done list's watcher; real Dramatiq workers on a real Redis,
routed by the router or in the worker, and ``why`` walks back to the message the app sent.

acquire(n) (sent by the test, done event ``acq/<n>``) -> treat -> report.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq import (
    Completion,
    Config,
    ConfigError,
    Registry,
    Router,
    RuleSet,
    build_ruleset,
    keep_lineage,
)
from resc_dramatiq.ops.why import why
from resc_dramatiq.worker.app import App
from tests.helpers import running, wait_for

DONE = "global/done"

#: The registry of this module's actors (the worker finds it in their module).
REG = Registry()


@pytest.fixture
def reg() -> Iterator[Registry]:
    yield REG
    REG.clear()


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    b = RedisBroker(url=redis_url)
    yield b
    b.client.connection_pool.disconnect()


def declare(broker: RedisBroker, reg: Registry, r: redis.Redis) -> Any:
    """The app's actors and its code rules; ``acquire``, the chain's first actor."""

    @dramatiq.actor(broker=broker, done_event="acq/${n}")
    def acquire(n: int) -> None:
        r.hincrby("runs", f"acquire/{n}", 1)

    @reg.on_done(r"^acq/(?P<n>\d+)$")
    @dramatiq.actor(broker=broker)
    def treat(n: str) -> None:
        r.hincrby("runs", f"treat/{n}", 1)

    @reg.on_done(r"^treat/(?P<n>\d+)$")
    @dramatiq.actor(broker=broker)
    def report(n: str) -> None:
        r.hincrby("runs", f"report/{n}", 1)

    return acquire


def ruleset_of(broker: RedisBroker) -> RuleSet:
    return build_ruleset(None, App.of_broker(broker))


@pytest.mark.parametrize("inline", [False, True], ids=["router", "inline"])
def test_keep_lineage_in_code_lets_why_walk_a_code_only_apps_chain_to_its_root(
    broker: RedisBroker, reg: Registry, r: redis.Redis, inline: bool
) -> None:
    reg.keep_lineage()  # the watcher of global/done, the rules' default
    broker.add_middleware(Completion(route_inline=inline, lineage=True), before=Retries)
    acquire = declare(broker, reg, r)
    ruleset = ruleset_of(broker)
    assert ruleset.watchers[0].spec.lineage is not None
    router = None if inline else Router(ruleset=ruleset, client=r)
    thread = None if router is None else threading.Thread(target=router.run)
    if thread is not None:
        thread.start()
    specs = [w.spec for w in ruleset.watchers]
    try:
        with running(broker):
            sent = acquire.send(1)
            wait_for(lambda: r.hget("runs", "report/1") == b"1", what="the chain's end")
            chain = wait_for(
                lambda: (
                    (c := why(r, specs, "dramatiq", "report/1"))
                    and c.steps[0].status == "done"
                    and c
                )
            )
    finally:
        if router is not None and thread is not None:
            router.stop()
            thread.join(10)
    assert [(s.kind, s.task, s.rule, s.status) for s in chain.steps] == [
        ("message", "report/1", "@on_done report", "done"),
        ("message", "treat/1", "@on_done treat", "done"),
        ("message", None, None, "done"),  # acquire: sent by the app, its own root
    ]
    assert chain.steps[-1].name == sent.message_id
    assert {s.root for s in chain.steps} - {None} == {sent.message_id}
    if inline:
        assert r.llen(DONE) == 0  # routed in the worker: no router hop


def test_without_keep_lineage_a_code_only_app_keeps_no_record(
    broker: RedisBroker, reg: Registry, r: redis.Redis
) -> None:
    broker.add_middleware(Completion(), before=Retries)
    declare(broker, reg, r)
    assert ruleset_of(broker).watchers[0].spec.lineage is None


def test_keep_lineage_takes_the_configs_settings_and_checks_them_where_they_are_written(
    broker: RedisBroker, reg: Registry, r: redis.Redis
) -> None:
    broker.add_middleware(Completion(), before=Retries)
    declare(broker, reg, r)
    reg.keep_lineage(DONE, ttl_s=3600, max_records=800)
    lineage = ruleset_of(broker).watchers[0].spec.lineage
    assert lineage is not None and (lineage.ttl_s, lineage.max_records) == (3600, 800)
    with pytest.raises(ConfigError, match=r"keep_lineage\('global/done'\): ttl_s"):
        reg.keep_lineage(DONE, ttl_s=0)
    with pytest.raises(ConfigError, match="said before with other settings"):
        reg.keep_lineage(DONE)
    reg.keep_lineage(DONE, ttl_s=3600, max_records=800)  # said again, the same: fine


def test_keep_lineage_naming_no_watcher_is_refused_with_the_close_match(
    broker: RedisBroker, reg: Registry, r: redis.Redis
) -> None:
    broker.add_middleware(Completion(), before=Retries)
    declare(broker, reg, r)
    reg.keep_lineage("global/dnoe")
    with pytest.raises(ConfigError, match=r"no watcher reads it .*did you mean 'global/done'"):
        ruleset_of(broker)


def test_keep_lineage_beside_a_config_file_turns_it_on_there_unless_the_file_says_otherwise(
    broker: RedisBroker, reg: Registry, r: redis.Redis
) -> None:
    broker.add_middleware(Completion(), before=Retries)
    declare(broker, reg, r)
    reg.keep_lineage()
    app = App.of_broker(broker)
    plain = Config.from_data({"watchers": [{"input_queue": DONE}]}, source="app.hjson")
    assert build_ruleset(plain, app).watchers[0].spec.lineage is not None
    other = {"watchers": [{"input_queue": DONE, "lineage": {"ttl_s": 60}}]}
    with pytest.raises(ConfigError, match=r"app\.hjson says otherwise"):
        build_ruleset(Config.from_data(other, source="app.hjson"), app)


def test_keep_lineage_is_the_default_registrys() -> None:
    from resc_dramatiq import registry

    assert keep_lineage == registry.keep_lineage

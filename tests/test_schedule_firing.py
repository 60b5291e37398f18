"""Specification: routers fire each tick of a schedule exactly once, on a real Redis.

The clock is injected (no waiting for real ticks); the firing is the production path:
the router's scheduler, ``fire.lua``, the router's rules for the event it pushed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from pytest_redis.executor import RedisExecutor

from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import WrongType
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.store.keys import schedule_state
from tests.helpers import running, wait_for

DONE = "global/done"
T0 = 1_800_000_000  # a multiple of 10


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    """Routers open more connections on ``r``: close them after."""
    yield
    r.connection_pool.disconnect()


def config(**schedule: Any) -> dict[str, Any]:
    rule = {"on": r"^tick/(?P<e>\d+)$", "make": {"task": "job/${e}", "queue": "jobs"}}
    spec = {"name": "clock", "every_s": 10, "event": "tick/${epoch}", **schedule}
    return {"watchers": [{"input_queue": DONE, "rules": [rule]}], "schedules": [spec]}


class Clock:
    """A settable clock (unix seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def router(client: redis.Redis, clock: Clock, data: dict[str, Any] | None = None) -> Router:
    ruleset = RuleSet.compile(Config.from_data(data or config()))
    return Router(ruleset=ruleset, client=client, clock=clock)


def fired(client: redis.Redis, queue: str = "jobs") -> list[str]:
    return [v.decode() for v in reversed(client.lrange(queue, 0, -1))]


def test_a_due_tick_is_pushed_onto_the_first_watchers_input_and_routed_by_the_rules(
    r: redis.Redis,
) -> None:
    router(r, Clock(T0 + 0.3)).run_until_idle()
    assert fired(r) == [f"job/{T0}"]


def test_a_tick_is_fired_once_however_many_routers_see_it(r: redis.Redis) -> None:
    clock = Clock(T0 + 0.3)
    for _ in range(3):
        router(r, clock).run_until_idle()
    assert fired(r) == [f"job/{T0}"]


def test_the_next_tick_fires_when_the_clock_reaches_it(r: redis.Redis) -> None:
    clock = Clock(T0 + 0.3)
    one = router(r, clock)
    one.run_until_idle()
    clock.now = T0 + 9.9
    one.run_until_idle()
    clock.now = T0 + 10.0
    one.run_until_idle()
    assert fired(r) == [f"job/{T0}", f"job/{T0 + 10}"]


def test_a_router_whose_clock_is_seconds_off_does_not_fire_a_tick_again(r: redis.Redis) -> None:
    router(r, Clock(T0 + 0.3)).run_until_idle()
    router(r, Clock(T0 + 4)).run_until_idle()  # ahead
    router(r, Clock(T0 - 3)).run_until_idle()  # behind: sees the tick before as due
    assert fired(r) == [f"job/{T0}"]


def test_the_state_records_the_tick_its_lag_and_the_instance(r: redis.Redis) -> None:
    one = router(r, Clock(T0 + 0.3))
    one.run_until_idle()
    state = {k.decode(): v.decode() for k, v in r.hgetall(schedule_state("clock")).items()}
    assert state["tick"] == str(T0)
    assert state["by"] == one.instance
    assert state["fired"] == "1"
    assert int(state["lag_ms"]) == int(state["fired_ms"]) - T0 * 1000


def test_catch_up_all_fires_the_ticks_missed_while_no_router_ran(r: redis.Redis) -> None:
    data = config(catch_up="all", grace_s=0)
    router(r, Clock(T0 + 0.3), data).run_until_idle()
    router(r, Clock(T0 + 45), data).run_until_idle()
    assert fired(r) == [f"job/{T0 + s}" for s in (0, 10, 20, 30, 40)]


def test_catch_up_last_fires_only_the_newest_missed_tick(r: redis.Redis) -> None:
    data = config(catch_up="last", grace_s=0)
    router(r, Clock(T0 + 0.3), data).run_until_idle()
    router(r, Clock(T0 + 45), data).run_until_idle()
    assert fired(r) == [f"job/{T0}", f"job/{T0 + 40}"]


def test_catch_up_none_fires_no_missed_tick_and_waits_for_the_next(r: redis.Redis) -> None:
    data = config(catch_up="none", grace_s=0)
    router(r, Clock(T0 + 0.3), data).run_until_idle()
    router(r, Clock(T0 + 45), data).run_until_idle()
    router(r, Clock(T0 + 50), data).run_until_idle()
    assert fired(r) == [f"job/{T0}", f"job/{T0 + 50}"]


def test_routers_racing_in_threads_fire_every_tick_exactly_once(
    redis_proc: RedisExecutor, r: redis.Redis
) -> None:
    data = config(every_s=1, event="tick/${epoch}")
    ticks = 40
    racers = 4
    barrier = threading.Barrier(racers)
    errors: list[BaseException] = []

    def race() -> None:
        client = redis.Redis(host=redis_proc.host, port=redis_proc.port)
        clock = Clock(T0)
        scheduler = router(client, clock, data).scheduler
        assert scheduler is not None
        try:
            for second in range(ticks):
                clock.now = T0 + second + 0.5
                barrier.wait(timeout=30)  # every router sees the same tick at once
                scheduler.fire_due()
        except BaseException as e:
            errors.append(e)
            barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert fired(r, DONE) == [f"tick/{T0 + s}" for s in range(ticks)]


def test_a_target_of_the_wrong_type_fires_nothing_and_says_which_key(r: redis.Redis) -> None:
    r.set("seen", "a string")
    one = router(r, Clock(T0 + 0.3), config(queue="seen"))
    assert one.scheduler is not None
    with pytest.raises(WrongType, match="'seen' holds a string"):
        one.scheduler.fire_due()
    assert not r.exists(schedule_state("clock"))


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    b = RedisBroker(url=redis_url)
    dramatiq.set_broker(b)
    yield b
    b.close()


def test_an_actor_schedule_sends_a_message_a_dramatiq_worker_runs_with_its_kwargs(
    r: redis.Redis, broker: RedisBroker
) -> None:
    seen: list[dict[str, Any]] = []

    @dramatiq.actor(broker=broker, queue_name="reports")
    def report(**kwargs: Any) -> None:
        seen.append(kwargs)

    data = config(actor="report", queue="reports", kwargs={"day": "${date}", "at": "${time}"})
    data["schedules"][0]["timezone"] = "Europe/Paris"
    with running(broker):
        router(r, Clock(T0 + 0.3), data).run_until_idle()
        wait_for(lambda: seen, what="the scheduled actor ran")
    assert seen == [{"day": "2027-01-15", "at": "09:00:00"}]  # T0 in Paris

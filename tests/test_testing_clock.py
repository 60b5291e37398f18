"""The testing kit's clock: ``Pipeline.advance`` fires schedules, join deadlines, delayed
messages and retries' backoffs without sleeping, through the production paths; and
what is due later is reported as such."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import dramatiq
import dramatiq.worker
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq import Join, Registry
from resc_dramatiq.testing import NotIdle, Pipeline, RescTestServer, TestClock
from resc_dramatiq.testing.pending import pending

REG = Registry()
HOUR = 3600


@pytest.fixture(autouse=True)
def _clear_registry() -> Iterator[None]:
    yield
    REG.clear()


def rolls(broker: RedisBroker) -> dict[str, Any]:
    """``cut`` and ``weigh`` of a roll join into ``pack``; 10 minutes after a roll's
    first stage without the other, ``late`` is sent instead. ``hourly`` runs every hour."""
    actors: dict[str, Any] = {}
    for stage in ("cut", "weigh"):

        def work(roll: str) -> None: ...

        work.__name__ = stage
        actors[stage] = dramatiq.actor(broker=broker, done_event=f"{stage}/${{roll}}")(work)

    @dramatiq.actor(broker=broker, done_event=False)
    def late(roll: str) -> None: ...

    join = Join(
        group="roll/${roll}",
        member="${stage}",
        expect=["cut", "weigh"],
        deadline_s=600,
        expired={"actor": "late", "task": "late/${roll}", "kwargs": {"roll": "${roll}"}},
    )

    @REG.on_done(r"^(?P<stage>cut|weigh)/(?P<roll>\d+)$", join=join)
    @dramatiq.actor(broker=broker, done_event=False)
    def pack(roll: str) -> None: ...

    @REG.on_schedule(every_s=HOUR, kwargs={"at": "${epoch}"})
    @dramatiq.actor(broker=broker, done_event=False)
    def hourly(at: str) -> None: ...

    return actors | {"late": late, "pack": pack, "hourly": hourly}


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "router"])
def test_advancing_fires_each_tick_and_a_join_deadline_once(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline], inline: bool
) -> None:
    actors = rolls(resc_broker)
    pipeline = resc_pipeline(inline=inline)
    pipeline.run_until_idle()  # the current tick, when it is less than a minute old
    ran_before = len(pipeline.calls("hourly"))
    actors["cut"].send("7")  # weigh 7 never comes
    actors["cut"].send("8")
    actors["weigh"].send("8")
    pipeline.run_until_idle()
    assert pipeline.calls("pack") == [{"roll": "8"}]
    assert "late" not in pipeline.counts()

    pipeline.advance(599)
    assert "late" not in pipeline.counts()  # not early
    pipeline.advance(1)
    assert pipeline.calls("late") == [{"roll": "7"}]

    pipeline.advance(3 * HOUR - 600)
    ticks = [int(c["at"]) for c in pipeline.calls("hourly")][ran_before:]
    assert len(ticks) == 3 and all(t % HOUR == 0 for t in ticks)
    assert ticks == sorted(ticks) and ticks[-1] <= pipeline.clock.now()
    assert pipeline.calls("late") == [{"roll": "7"}]  # once
    assert pipeline.calls("pack") == [{"roll": "8"}]


def test_a_delayed_message_waits_for_the_clock_and_says_when_it_is_due(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    @dramatiq.actor(broker=resc_broker, done_event=False)
    def remind(who: str) -> None: ...

    pipeline = resc_pipeline()
    remind.send_with_options(args=("ann",), delay=HOUR * 1000)
    assert pipeline.run_until_idle() < 1  # what is due after the timeout does not hold it up
    (waiting,) = pipeline.pending()
    assert waiting.later and re.fullmatch(r"remind\('ann'\) due in 3\d\d\d\.\d s", waiting.first[0])
    pipeline.advance(HOUR - 10, timeout_s=2)  # runs what comes due within 2 s
    assert pipeline.counts() == {}
    assert re.fullmatch(r"remind\('ann'\) due in (9|10)\.\d s", pipeline.pending()[0].first[0])
    pipeline.advance(10)
    assert pipeline.calls("remind") == [{"who": "ann"}]
    assert pipeline.pending() == []


def test_not_idle_still_says_what_waits_for_the_clock(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    @dramatiq.actor(broker=resc_broker, queue_name="later", done_event=False)
    def remind(who: str) -> None: ...

    @dramatiq.actor(broker=resc_broker, queue_name="nobody", done_event=False)
    def stuck() -> None: ...

    pipeline = resc_pipeline(queues={"later", "later.DQ"})
    remind.send_with_options(args=("ann",), delay=60_000)
    stuck.send()
    with pytest.raises(NotIdle) as caught:
        pipeline.run_until_idle(timeout_s=0.3)
    assert "queue 'nobody' (dramatiq:nobody): 1 -> stuck()" in str(caught.value)
    assert "remind('ann') due in 5" in str(caught.value)


def test_a_retry_backoff_is_on_the_clock(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    failed: list[int] = []

    @dramatiq.actor(broker=resc_broker, done_event=False, min_backoff=60_000, max_retries=1)
    def flaky(n: int) -> None:
        if not failed:
            failed.append(n)
            raise RuntimeError("the first try fails")

    pipeline = resc_pipeline()
    flaky.send(1)
    pipeline.run_until_idle()
    assert [r.outcome for r in pipeline.runs("flaky")] == ["retried"]
    assert re.fullmatch(r"flaky\(1\) due in \d+\.\d s", pipeline.pending()[0].first[0])
    pipeline.advance(2 * 60)  # the backoff is at most twice min_backoff, jittered
    assert [r.outcome for r in pipeline.runs("flaky")] == ["retried", "done"]


def test_the_clock_only_goes_forward_and_is_put_back_after(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    real = dramatiq.worker.current_millis  # type: ignore[attr-defined]
    pipeline = resc_pipeline()
    with pytest.raises(ValueError, match=r"-1 is not a number of seconds >= 0"):
        pipeline.advance(-1)
    with pytest.raises(ValueError, match=r"nan is not a number"):
        pipeline.clock.advance(float("nan"))
    pipeline.advance(30)
    assert 29.9 < pipeline.clock.now() - TestClock().now() < 30.5
    assert dramatiq.worker.current_millis == pipeline.clock.millis  # type: ignore[attr-defined]
    pipeline.close()
    assert dramatiq.worker.current_millis is real  # type: ignore[attr-defined]
    assert RedisBroker is dramatiq.brokers.redis.RedisBroker


def test_too_many_ticks_in_one_step_are_refused(
    resc_broker: RedisBroker, resc_pipeline: Callable[..., Pipeline]
) -> None:
    @REG.on_schedule(every_s=1)
    @dramatiq.actor(broker=resc_broker, done_event=False)
    def tick() -> None: ...

    pipeline = resc_pipeline()
    with pytest.raises(ValueError, match=r"more than 1000 schedule ticks in 5000 s"):
        pipeline.advance(5000)


class _MovingClient(redis.Redis):
    """A client to the real server that, at its first read of a delay queue's items,
    first moves the message into a worker's acks set, as a worker fetching it would
    between the scan and the read."""

    moved = False

    def lrange(self, name: Any, start: int, end: int) -> Any:
        if not self.moved and str(name).endswith(".DQ"):
            self.moved = True
            [message_id] = cast(list[bytes], super().lrange(name, 0, -1))
            super().lrem(name, 1, str(message_id, "utf-8"))
            super().sadd("dramatiq:__acks__.worker-1.default.DQ", message_id)
        return super().lrange(name, start, end)


def test_pending_reads_again_when_a_message_moves_while_it_looks(
    resc_server: RescTestServer, resc_broker: RedisBroker
) -> None:
    @dramatiq.actor(broker=resc_broker, done_event=False)
    def remind(who: str) -> None: ...

    remind.send_with_options(args=("ann",), delay=HOUR * 1000)  # no worker: it stays
    client = _MovingClient(connection_pool=redis.ConnectionPool.from_url(resc_server.url))
    (place,) = pending(client, "dramatiq", (), now_ms=int(time.time() * 1000))
    assert client.moved
    assert place.where == "in flight from queue 'default.DQ'" and place.later
    assert re.fullmatch(r"remind\('ann'\) due in 3\d\d\d\.\d s", place.first[0])

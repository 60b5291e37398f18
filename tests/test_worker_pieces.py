"""The pieces ``Completion`` hands its work to, each on its own: in-worker routing fed one
``DoneMessage``, and the bounded retry loop with its ``LOST:`` line."""

from __future__ import annotations

import logging

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import WrongType
from resc_dramatiq.store.commit import DoneMessage
from resc_dramatiq.store.scripts import Scripts
from resc_dramatiq.worker.inline import InlineRouting
from resc_dramatiq.worker.retrying import Retrying

LOGGER = logging.getLogger("tests.worker_pieces")
DONE = "{w}/done"
RULES = Config.from_data(
    {
        "watchers": [
            {
                "input_queue": DONE,
                "rules": [{"on": r"^acq/(?P<p>\d+)$", "make": {"queue": "{w}/todo"}}],
            }
        ]
    }
)


def routing(rules: Config | None) -> InlineRouting:
    """Inline routing of ``rules``, not enabled otherwise (rules alone turn it on)."""
    retrying = Retrying(logger=LOGGER, attempts=3)
    return InlineRouting(rules=rules, enabled=False, retrying=retrying, logger=LOGGER)


def test_inline_routing_commits_one_done_message_once_however_often_it_is_fed(
    redis_url: str, r: redis.Redis
) -> None:
    broker = RedisBroker(url=redis_url)
    inline = routing(RULES)
    inline.boot(broker=broker, scripts=Scripts(r))
    assert inline.watched == (DONE,)
    finished = DoneMessage("m-1", "acq/1", DONE, None)
    # the second: repeated
    assert inline.route(finished) == inline.route(finished) == "commit"
    assert r.lrange("{w}/todo", 0, -1) == [b"acq/1"]
    assert r.llen(DONE) == 0
    other = DoneMessage("m-2", "acq/2", "{x}/done", None)  # no watcher reads its list
    assert inline.route(other) == "router"
    broker.close()


def test_inline_routing_routes_nothing_before_the_boot_nor_when_not_enabled(
    redis_url: str, r: redis.Redis
) -> None:
    finished = DoneMessage("m-1", "acq/1", DONE, None)
    assert routing(RULES).route(finished) == "router"  # not booted
    broker = RedisBroker(url=redis_url)
    off = routing(None)
    off.boot(broker=broker, scripts=Scripts(r))
    assert off.route(finished) == "router" and off.watched == ()
    off.rules = RULES  # assigning rules turns routing on, for the next message
    assert off.route(finished) == "commit"
    assert r.lrange("{w}/todo", 0, -1) == [b"acq/1"]
    broker.close()


def test_a_transient_error_is_retried_and_the_write_answers() -> None:
    failures = [redis.ConnectionError("down"), redis.TimeoutError("slow")]

    def write() -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    retrying = Retrying(logger=LOGGER, attempts=3, first_s=0.001, cap_s=0.001)
    assert retrying.run("a write", write) == "written"


def test_a_write_failing_every_attempt_is_logged_lost_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        raise redis.ConnectionError("down")

    retrying = Retrying(logger=LOGGER, attempts=4, first_s=0.001, cap_s=0.001)
    assert retrying.run("done event 'acq/1' for '{w}/done'", write) is None
    assert len(calls) == 4
    [lost] = [rec for rec in caplog.records if rec.getMessage().startswith("LOST:")]
    assert lost.levelno == logging.CRITICAL
    assert lost.getMessage() == (
        "LOST: done event 'acq/1' for '{w}/done' failed after 4 attempt(s): ConnectionError: down"
    )


def test_an_error_that_is_not_transient_is_not_retried() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise WrongType("a key of the wrong type")

    with pytest.raises(WrongType):
        Retrying(logger=LOGGER, attempts=5).run("a write", refused)
    assert calls == [1]

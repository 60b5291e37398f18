"""A primary demoted under a running router, as a failover does to a primary that lives
on (or comes back): its blocked take is answered ``UNBLOCKED``, its writes ``READONLY``.

The router rides it out like an outage, and says so once per change of state: one
WARNING when the primary is lost, one when it is back; the tracebacks of these expected
errors only at DEBUG, never "watcher died".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from resc_dramatiq import Config, Router, RouterOptions, build_ruleset
from tests.helpers import wait_for
from tests.procs import own_redis, url_of

RULES = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [{"on": r"^acq/(?P<n>\d+)$", "make": {"task": "t/${n}", "queue": "out"}}],
        }
    ]
}


@contextmanager
def running(router: Router) -> Iterator[None]:
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        router.stop()
        thread.join(20)
    assert not thread.is_alive()


def warnings_and_above(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        rec
        for rec in caplog.records
        if rec.levelno >= logging.WARNING and rec.name.startswith("resc_dramatiq")
    ]


def test_a_demoted_primary_is_one_warning_when_lost_one_when_back_and_tracebacks_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="resc_dramatiq")
    with own_redis() as primary, own_redis() as other:
        client = redis.Redis.from_url(url_of(primary))
        options = RouterOptions(batch_size=10, heartbeat_ttl_s=2, block_s=1)
        router = Router(
            ruleset=build_ruleset(Config.from_data(RULES), None), client=client, options=options
        )
        direct = redis.Redis.from_url(url_of(primary))
        with running(router):
            direct.lpush("in", "acq/1")
            wait_for(lambda: direct.llen("out") == 1, what="the first event routed")
            direct.replicaof("127.0.0.1", other.port)  # demoted: a failover elsewhere
            wait_for(lambda: warnings_and_above(caplog), what="the loss said")
            direct.replicaof("NO", "ONE")  # a primary again
            direct.lpush("in", "acq/2")
            wait_for(lambda: direct.llen("out") == 2, timeout_s=30, what="routing resumed")
            wait_for(lambda: "resuming" in caplog.text, what="the return said")
        assert router.failed is None
        direct.close()
        client.close()
    said = warnings_and_above(caplog)
    assert [rec.levelno for rec in said] == [logging.WARNING, logging.WARNING]
    assert "Redis unreachable" in said[0].getMessage()
    assert "reachable again; resuming" in said[1].getMessage()
    assert not [rec for rec in said if rec.exc_info]
    assert not [rec for rec in caplog.records if "died" in rec.getMessage()]
    traced = [rec for rec in caplog.records if rec.exc_info]
    assert traced and {rec.levelno for rec in traced} == {logging.DEBUG}

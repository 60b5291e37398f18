"""A Dramatiq app that routes its done events inline, for ``tests/test_worker_once.py``.

Run by the stock ``dramatiq`` command (``dramatiq tests.inline_shop``) with the Redis URL
in ``RESC_TEST_REDIS_URL``. ``acquire(n)`` declares its done event ``acq/${n}``; the
``@on_done`` rule on ``treat`` sends ``treat(n)`` for it, with no dedup set: only the
per-message marker keeps a redelivered ``acquire`` from sending ``treat`` twice.

``KillAfterDone`` is a test fault: added before ``Completion``, its ``after_process_message``
runs after Completion's (Dramatiq runs ``after_*`` hooks in reverse), so when the key
``kill/armed`` is set, the first ``acquire`` to finish has its done event written and its
worker process killed with SIGKILL before the ack.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware, Retries

from resc_dramatiq import Completion, Redelivery, on_done

RUNS = "shop/runs"
ARMED = "kill/armed"
VICTIM = "kill/victim"


class KillAfterDone(Middleware):
    """SIGKILL this worker process once, between the done write and the ack."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if message.actor_name == "acquire" and self.client.getdel(ARMED):
            self.client.set(VICTIM, message.args[0])
            os.kill(os.getpid(), signal.SIGKILL)


broker = RedisBroker(url=os.environ["RESC_TEST_REDIS_URL"])
broker.add_middleware(Completion(route_inline=True), before=Retries)
broker.add_middleware(KillAfterDone(broker.client), before=Completion)
broker.add_middleware(Redelivery(heartbeat_timeout_ms=1_500, interval_ms=300))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="acquire", done_event="acq/${n}")
def acquire(n: str) -> None:
    broker.client.hincrby(RUNS, f"acquire/{n}", 1)


@on_done(r"^acq/(?P<n>\d+)$")
@dramatiq.actor(queue_name="treat")
def treat(n: str) -> None:
    broker.client.hincrby(RUNS, f"treat/{n}", 1)

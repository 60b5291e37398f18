"""A Dramatiq app for ``dramatiq tests.boot_app``: one actor, ``thumbnail``, and
``Completion`` routing inline with the rules ``$BOOT_RULES`` names (a config file), or
with its ``@on_done`` rules alone when ``$BOOT_RULES`` is empty; ``$BOOT_CODE_RULE=bad``
adds a code rule that passes its decorator but not the compile (a delay over Dramatiq's
seven days). The broker is ``$REDIS_URL``.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq import Completion
from resc_dramatiq.worker.registry import Registry

RUNS = "boot/runs"
QUEUE = "thumbs"
EIGHT_DAYS_MS = 8 * 24 * 3600 * 1000

rules = os.environ.get("BOOT_RULES") or None
broker = RedisBroker(url=os.environ["REDIS_URL"])
broker.add_middleware(Completion(rules=rules, route_inline=True), before=Retries)
dramatiq.set_broker(broker)
code_rules = Registry()  # found by the worker: a registry the actors' module holds


@dramatiq.actor(queue_name=QUEUE)
def thumbnail(n: str) -> None:
    broker.client.hincrby(RUNS, n, 1)


if os.environ.get("BOOT_CODE_RULE") == "bad":
    code_rules.on_done(r"^acq/(?P<n>\d+)$", delay_ms=EIGHT_DAYS_MS)(thumbnail)

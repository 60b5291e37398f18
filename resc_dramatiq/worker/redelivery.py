"""``Redelivery``: messages held by a dead Dramatiq worker come back in seconds.

Dramatiq's ``RedisBroker`` hands a dead worker's unacknowledged messages back through
*maintenance*, a step of its ``dispatch.lua`` script that runs on a random roll
(``maintenance_chance``: 1,000 in a million commands) and only for the queue the command
was about, and only for workers whose heartbeat is older than ``heartbeat_timeout``
(60 s). An idle worker polls each queue about once a second, so the roll comes up after
~1,000 s on average: a killed worker's message waits one minute plus many more.

Lowering ``heartbeat_timeout`` alone is unsafe: a worker only writes its heartbeat when it
dispatches a command, and a worker whose every prefetch slot is busy with a long task
sends none, so others would take it for dead and run its messages a second time.

This middleware fixes both sides, in every worker process, with Dramatiq's own script:

* a thread runs ``dispatch.lua`` every ``interval_ms`` with maintenance forced on, for
  each declared queue and delay queue: the worker's heartbeat stays fresh however busy
  its threads are, and dead workers' messages are requeued on the next round;
* ``heartbeat_timeout_ms`` (default 5 s) replaces the broker's 60 s once the worker boots.

Every worker consuming the broker's namespace must run it (a worker without it and
with busy threads could be taken for dead). Add it like any middleware::

    broker.add_middleware(Redelivery(heartbeat_timeout_ms=5_000, interval_ms=1_000))

Cost: one script call per queue per interval and worker process; a dead worker is looked
up with ``KEYS <namespace>:__acks__.<id>*`` once per queue, until its acks are gone.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from dramatiq import Broker, Middleware
from dramatiq.logging import get_logger

from ..store.resilience import Backoff, is_transient

#: A command name ``dispatch.lua`` does not know: only the heartbeat and maintenance run.
MAINTENANCE_COMMAND = "resc-maintenance"


class Redelivery(Middleware):
    """Keep this worker's heartbeat fresh and requeue dead workers' messages promptly."""

    def __init__(self, *, heartbeat_timeout_ms: int = 5_000, interval_ms: int = 1_000) -> None:
        if interval_ms <= 0 or heartbeat_timeout_ms < 3 * interval_ms:
            raise ValueError(
                "heartbeat_timeout_ms must be at least 3 x interval_ms (a late round must "
                f"not make a live worker look dead): got {heartbeat_timeout_ms} and {interval_ms}"
            )
        self.logger = get_logger(__name__, type(self))  # type: ignore[no-untyped-call]
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.interval_ms = interval_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        """Shorten the broker's heartbeat timeout (also for its random maintenance)."""
        broker.heartbeat_timeout = self.heartbeat_timeout_ms  # type: ignore[attr-defined]

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        """Start the heartbeat and maintenance thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(broker,), name="resc-redelivery", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        """Stop the thread (a stopped worker must look dead again)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_once(self, broker: Broker) -> None:
        """One round: heartbeat and forced maintenance on every queue of ``broker``."""
        script = broker.scripts["dispatch"]  # type: ignore[attr-defined]
        queues = set(broker.get_declared_queues()) | set(broker.get_declared_delay_queues())
        for queue in sorted(queues):
            script(
                keys=[broker.namespace],  # type: ignore[attr-defined]
                args=[
                    MAINTENANCE_COMMAND,
                    int(time.time() * 1000),
                    queue,
                    broker.broker_id,  # type: ignore[attr-defined]
                    self.heartbeat_timeout_ms,
                    broker.dead_message_ttl,  # type: ignore[attr-defined]
                    1,  # maintenance: always
                    broker._max_unpack_size(),  # type: ignore[attr-defined]
                ],
            )

    def _loop(self, broker: Broker) -> None:
        backoff = Backoff(first_s=self.interval_ms / 1000, cap_s=self.interval_ms / 1000)
        while not self._stop.is_set():
            try:
                self.run_once(broker)
            except redis.RedisError as error:
                if not is_transient(error):
                    self.logger.exception("Redelivery round failed")
                # Redis away: Dramatiq's consumers reconnect by themselves; so do we.
            backoff.wait(self._stop)

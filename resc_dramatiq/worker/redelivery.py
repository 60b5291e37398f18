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

* each running ``dramatiq.Worker`` has a thread of its own (``resc-redelivery-<n>``)
  that runs ``dispatch.lua`` every ``interval_ms`` with maintenance forced on, for each
  declared queue and delay queue: the worker's heartbeat stays fresh however busy its
  threads are, and dead workers' messages are requeued on the next round;
* ``heartbeat_timeout_ms`` (default 5 s) replaces the broker's 60 s once the worker boots.

The rounds belong to the worker, not to the middleware: two workers on one broker in one
process share this object, and stopping one must not end the rounds of the other, which
keeps the short timeout and would otherwise be taken for dead.

Every worker consuming the broker's namespace must run it (a worker without it and
with busy threads could be taken for dead). Add it like any middleware::

    broker.add_middleware(Redelivery(heartbeat_timeout_ms=5_000, interval_ms=1_000))

Cost: one script call per queue per interval and running worker; a dead worker is looked
up with ``KEYS <namespace>:__acks__.<id>*`` once per queue, until its acks are gone.
"""

from __future__ import annotations

import threading

import redis
from dramatiq import Broker, Middleware, Worker
from dramatiq.logging import get_logger

from ..compat import run_maintenance, set_heartbeat_timeout
from ..store.resilience import Backoff, is_transient

#: A command name ``dispatch.lua`` does not know: only the heartbeat and maintenance run.
MAINTENANCE_COMMAND = "resc-maintenance"


class _Rounds:
    """One worker's rounds: its own thread and its own stop signal."""

    def __init__(self, thread: threading.Thread, stop: threading.Event) -> None:
        self.thread = thread
        self.stop = stop


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
        self._rounds: dict[Worker, _Rounds] = {}
        self._started = 0  # numbers the threads: resc-redelivery-1, -2, ...
        self._lock = threading.Lock()

    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Shorten the broker's heartbeat timeout (also for its random maintenance)."""
        set_heartbeat_timeout(broker, self.heartbeat_timeout_ms)

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """Start this worker's heartbeat and maintenance thread."""
        with self._lock:
            if worker in self._rounds:
                return  # booted twice without a shutdown: its rounds already run
            self._started += 1
            stop = threading.Event()
            thread = threading.Thread(
                target=self._loop,
                args=(broker, stop),
                name=f"resc-redelivery-{self._started}",
                daemon=True,
            )
            self._rounds[worker] = _Rounds(thread, stop)
            thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        """Stop this worker's thread (a stopped worker must look dead again); others run on."""
        with self._lock:
            rounds = self._rounds.pop(worker, None)
        if rounds is not None:
            rounds.stop.set()
            rounds.thread.join(timeout=5)

    def run_once(self, broker: Broker) -> None:
        """One round: heartbeat and forced maintenance on every queue of ``broker``."""
        queues = set(broker.get_declared_queues()) | set(broker.get_declared_delay_queues())
        for queue in sorted(queues):
            run_maintenance(
                broker,
                queue=queue,
                heartbeat_timeout_ms=self.heartbeat_timeout_ms,
                command=MAINTENANCE_COMMAND,
            )

    def _loop(self, broker: Broker, stop: threading.Event) -> None:
        backoff = Backoff(first_s=self.interval_ms / 1000, cap_s=self.interval_ms / 1000)
        while not stop.is_set():
            try:
                self.run_once(broker)
            except redis.RedisError as error:
                if not is_transient(error):
                    self.logger.exception("Redelivery round failed")
                # Redis away: Dramatiq's consumers reconnect by themselves; so do we.
            backoff.wait(stop)

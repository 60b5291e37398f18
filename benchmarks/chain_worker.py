"""A real Dramatiq worker process running three no-op stages, for the chain benchmark.

``python benchmarks/chain_worker.py MODE REDIS_URL THREADS RULES OUT`` where MODE is

* ``a``: Dramatiq's own pipeline (``s1 | s2 | s3``, results piped);
* ``b``: the ``Completion`` middleware routing each done event inside the worker;
* ``c``: ``Completion`` emitting done events, the router (another process) routing them.

Every stage records the time it started, per chain id, in memory; a reporter thread
writes the number of finished chains to its field of the hash ``bench:chain:finished``
every 10 ms, so the
benchmark never adds a round trip to the stages themselves. On SIGTERM the worker
stops and writes the timings to OUT as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq.config.model import Config
from resc_dramatiq.rules.ruleset import RuleSet
from resc_dramatiq.worker.completion import Completion

QUEUE = "chain"
DONE = "chain/done"
FINISHED = "bench:chain:finished"
READY = "bench:chain:ready"
#: Set to 1: the worker traces (``Tracing``, ``Completion(lineage=True)``): traced.py.
TRACE_ENV = "CHAIN_TRACE"

_lock = threading.Lock()
_starts: dict[int, list[float]] = {}  # chain id -> start time of s1, s2, s3
_finished = [0, 0.0]  # chains whose s3 ran, time the last one ended


def _record(stage: int, i: int) -> None:
    now = time.time()
    with _lock:
        _starts.setdefault(i, [0.0, 0.0, 0.0])[stage] = now


def build(mode: str, url: str, rules: str) -> RedisBroker:
    """The broker and the three actors of ``mode``."""
    broker = RedisBroker(url=url)
    traced = os.environ.get(TRACE_ENV) == "1"
    if traced:  # the traced rows: the spans of a production process, dropped
        from traced import provider

        from resc_dramatiq.tracing import Tracing

        broker.add_middleware(Tracing(tracer_provider=provider()))
    if mode != "a":
        ruleset = RuleSet.compile(Config.load(rules)) if mode == "b" else None
        completion = Completion(rules=ruleset, done_queue=DONE, lineage=traced)
        broker.add_middleware(completion, before=Retries)
    dramatiq.set_broker(broker)
    piped = mode == "a"
    s1_options: dict[str, Any] = {} if piped else {"done_event": "s1/${i}"}

    @dramatiq.actor(queue_name=QUEUE, actor_name="s1", max_retries=0, **s1_options)
    def s1(i: int) -> int | None:
        _record(0, int(i))
        return i if piped else None  # Dramatiq's pipeline passes it on to s2

    @dramatiq.actor(queue_name=QUEUE, actor_name="s2", max_retries=0)
    def s2(i: int) -> int | None:
        _record(1, int(i))
        return i if piped else None

    s3_options: dict[str, Any] = {} if piped else {"done_event": False}  # a leaf: no event

    @dramatiq.actor(queue_name=QUEUE, actor_name="s3", max_retries=0, **s3_options)
    def s3(i: int) -> None:
        _record(2, int(i))
        with _lock:
            _finished[0] += 1
            _finished[1] = time.time()

    return broker


def main(mode: str, url: str, threads: int, rules: str, out: str) -> None:
    """Run the worker until SIGTERM, then write the timings."""
    broker = build(mode, url, rules)
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    me = str(os.getpid())  # several worker processes may run: one field each
    broker.client.hset(READY, me, "1")
    while not stop.wait(0.01):
        broker.client.hset(FINISHED, me, _finished[0])
    worker.stop(timeout=10_000)
    with _lock:
        data = {"starts": {str(k): v for k, v in _starts.items()}, "last_end": _finished[1]}
    with open(out, "w") as f:
        json.dump(data, f)
    broker.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])

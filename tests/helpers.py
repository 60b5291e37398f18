"""The tests' shared helpers: bounded waiting, the planner's tasks, production rounds,
a worker for a block, the ``dead`` commands."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq
from click.testing import CliRunner, Result
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq.cli import main
from resc_dramatiq.router.loop import WatcherLoop
from resc_dramatiq.rules.batch import Batch
from resc_dramatiq.rules.model import Task, WatcherRules
from resc_dramatiq.rules.patterns import decode_event
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.store.commit import CommitResult


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 15.0, what: str = "", poll_s: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what or predicate}")
        time.sleep(poll_s)


def tasks_of(rules: WatcherRules, event: bytes | str) -> list[Task]:
    """The tasks the router's planner makes of ``event`` (raises what the rules raise)."""
    planner = Planner(rules)
    return [t for m in rules.matches(decode_event(event)) for t in planner.expand(m)]


def one_round(loop: WatcherLoop) -> int:
    """One production round of ``loop`` without blocking: take, plan, commit one batch.

    A batch it took behind the commit is committed too, so nothing is left in hand.
    """
    never = threading.Event()
    committed = loop.round(never, block=False)
    while loop.flight.batches:
        committed += loop.round(never, block=False)
    loop.flight.drop_take()
    return committed


def commit(loop: WatcherLoop, batch: Batch) -> CommitResult:
    """Commit ``batch`` as a round does: send the script, then read its reply."""
    return loop.store.commit(batch).result()


@contextmanager
def running(broker: RedisBroker) -> Iterator[dramatiq.Worker]:
    """A real worker on ``broker`` for the duration of the block."""
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def dead_cli(redis_url: str, config_file: Path, command: str, *args: str) -> Result:
    """``resc-dramatiq dead COMMAND CONFIG ARGS... --redis-url URL``."""
    argv = ["dead", command, str(config_file), *args, "--redis-url", redis_url]
    return CliRunner().invoke(main, argv)

"""The tests' shared helpers: bounded waiting, the planner's tasks, production rounds."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from resc_dramatiq.router.loop import WatcherLoop
from resc_dramatiq.rules.model import Task, WatcherRules
from resc_dramatiq.rules.patterns import decode_event
from resc_dramatiq.rules.plan import Batch, Planner
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
    held: deque[Batch] = deque()
    never = threading.Event()
    committed = loop.round(held, never, block=False)
    while held:
        committed += loop.round(held, never, block=False)
    loop.drop_take()
    return committed


def commit(loop: WatcherLoop, batch: Batch) -> CommitResult:
    """Commit ``batch`` as a round does: send the script, then read its reply."""
    return loop.store.send_commit(batch).result()

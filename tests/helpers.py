"""The tests' shared helpers: bounded waiting, and the planner's tasks of one event."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.rules.ruleset import Task, WatcherRules, decode_event


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

"""The soak: a two-stage chain (raw lists and Dramatiq workers) under chaos.

Three routers are killed with SIGKILL at random moments and restarted, Redis is stopped
once (append-only file on) while events stream in; afterwards every task exists exactly
once, nothing is left in a taken list and both dead-letter lists are empty.

The short run is part of every test run. The long run (``SOAK_EVENTS``, default 200,000
events, Redis stopped for 5 s) is marked ``soak`` and runs only when selected with
``-m soak`` (deselected otherwise); ``scripts/soak.sh`` runs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import Soak, SoakPlan

SHORT = SoakPlan(events=5_000, produce_s=10.0, redis_stop_s=2.0, quiesce_timeout_s=40.0)


def long_plan() -> SoakPlan:
    events = int(os.environ.get("SOAK_EVENTS", "200000"))
    return SoakPlan(
        events=events,
        produce_s=max(10.0, events / 2_500),  # a stream, not one burst
        actor_zeros=2,  # every 100th event through Dramatiq
        redis_stop_s=5.0,
        redis_stop_at=0.5,
        quiesce_timeout_s=300.0,
    )


def test_a_short_soak_under_router_kills_and_a_redis_stop_runs_every_task_exactly_once(
    tmp_path: Path,
) -> None:
    figures = Soak(plan=SHORT, workdir=tmp_path).run()
    print(figures.report())
    assert figures.kills >= 2 and figures.redis_stops == 1
    assert figures.worker_restarts == 0  # the workers rode out the Redis stop


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_the_long_soak_runs_every_task_exactly_once(tmp_path: Path) -> None:
    plan = long_plan()
    figures = Soak(plan=plan, workdir=tmp_path).run()
    print(f"\nlong soak: {plan}\n{figures.report()}")
    assert figures.redis_stops == 1
    assert figures.worker_restarts == 0

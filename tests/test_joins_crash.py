"""Joins under real failures: routers and workers killed, replies lost, members repeated,
failed or late, deadlines raced by three routers, a fetched fan-out.

The two soaks (``tests/joins_chaos.py``) run a Dramatiq fan-out/fan-in pipeline on real
workers: 40 groups of 50 members, each member delivered 1 to 3 times, in a random order,
every tenth group missing a member for good. The long variants (500 groups, marked
``soak``, run with ``-m soak``) are the issue's full size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.joins_chaos import JoinPlan, JoinSoak, Mode


def long_groups() -> int:
    return int(os.environ.get("JOINS_SOAK_GROUPS", "500"))


def test_router_kills_and_lost_commit_replies_fire_each_join_once_never_early(
    tmp_path: Path,
) -> None:
    figures = JoinSoak(plan=JoinPlan(mode=Mode.ROUTERS), workdir=tmp_path).run()
    print(figures.report())
    assert figures.kills >= 3 and figures.replies_lost >= 5
    assert figures.late > 0  # members came again after their group completed


def test_worker_kills_with_in_worker_routing_fire_each_join_once_never_early(
    tmp_path: Path,
) -> None:
    figures = JoinSoak(plan=JoinPlan(mode=Mode.INLINE), workdir=tmp_path).run()
    print(figures.report())
    assert figures.kills >= 3
    assert figures.late > 0

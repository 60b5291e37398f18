"""Data between stages under real failures: a three-stage Dramatiq chain, each stage given
what the previous one returned, through router processes killed and their commit
replies lost, and routed in worker processes killed mid-message; in both, workers
also kill themselves between a done event and its message's ack.

The soaks (``tests/data_chaos.py``) run 150 chains, each first stage delivered 1 to 3
times; their long variants (marked ``soak``: deselected unless chosen with ``-m soak``)
run 1500.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.data_chaos import DataPlan, DataSoak, Mode

CHAINS = 150


def test_router_kills_and_lost_replies_make_each_follow_up_once_with_its_data(
    tmp_path: Path,
) -> None:
    soak = DataSoak(plan=DataPlan(mode=Mode.ROUTERS, chains=CHAINS), workdir=tmp_path)
    figures = soak.run()
    print(figures.report())
    assert figures.kills >= 3 and figures.replies_lost >= 5
    assert figures.stage_1_runs > CHAINS  # first stages delivered more than once
    assert figures.deaths >= 1  # a message ran again after its done event was written


def test_worker_kills_with_in_worker_routing_make_each_follow_up_once_with_its_data(
    tmp_path: Path,
) -> None:
    soak = DataSoak(plan=DataPlan(mode=Mode.INLINE, chains=CHAINS), workdir=tmp_path)
    figures = soak.run()
    print(figures.report())
    assert figures.kills >= 3 and figures.replies_lost >= 5
    assert figures.stage_1_runs > CHAINS
    assert figures.deaths >= 1


@pytest.mark.soak
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("mode", [Mode.ROUTERS, Mode.INLINE])
def test_the_long_data_soak_makes_each_follow_up_once_with_its_data(
    tmp_path: Path, mode: Mode
) -> None:
    chains = int(os.environ.get("DATA_SOAK_CHAINS", "1500"))
    plan = DataPlan(
        mode=mode, chains=chains, produce_s=max(6.0, chains / 50), quiesce_timeout_s=900.0
    )
    figures = DataSoak(plan=plan, workdir=tmp_path).run()
    print(f"\nlong data soak ({mode.value}): {figures.report()}")

"""Exactly once on a real Redis Cluster, under kill -9 of routers, a failover of the
watcher's shard and a slot migration (the run is in ``tests/cluster_chaos.py``)."""

from __future__ import annotations

from pathlib import Path

from tests.cluster_chaos import run_chaos


def test_a_chain_over_many_slots_is_routed_exactly_once_through_kills_a_failover_and_a_migration(
    tmp_path: Path,
) -> None:
    figures = run_chaos(tmp_path, events=2000)
    print(
        f"\ncluster chaos: {figures.router_kills} router kills, watcher's shard promoted in "
        f"{figures.promoted_s} s, {figures.migrated_keys} keys migrated"
    )
    assert figures.problems() == []
    assert figures.router_kills >= 3
    assert figures.promoted_s is not None and figures.promoted_s < 10
    assert figures.migrated_keys > 0
    for log in sorted(tmp_path.glob("r*.log")):  # the failover said in lines, no traceback
        text = log.read_text(errors="replace")
        assert " ERROR " not in text and "Traceback" not in text, f"{log.name}:\n{text}"

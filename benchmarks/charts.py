"""PNG charts of the benchmark's scaling section, for RESULTS.md.

``python benchmarks/charts.py RESULTS.json OUT_DIR`` (bench.py calls it with
``--charts DIR``) draws events/s against the number of rules, against router processes
and against the size of an event, each with its baseline marked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt


def draw(out: dict[str, Any], folder: Path) -> list[Path]:
    """Write the charts into ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    machine = out["machine"]
    note = f"{machine['cores']} cores, {machine['cpu']}, {machine['server']}"
    drawn = []
    if "scaling" in out:
        scaling = out["scaling"]
        drawn += [
            _rules(scaling["rules"], folder / "rules.png", note),
            _processes(scaling["processes"], folder / "processes.png", note),
            _sizes(scaling["event_size"], folder / "event_size.png", note),
        ]
    if "cluster" in out:
        drawn.append(_cluster(out["cluster"], folder / "cluster.png", note))
    return drawn


def _cluster(rows: list[dict[str, Any]], path: Path, note: str) -> Path:
    """Events/s of each cluster row, as a ratio to the single primary of the same run."""
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['name']}\n{r['routers']} router{'s' if r['routers'] > 1 else ''}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    bars = ax.barh(range(len(rows)), ratios, color="tab:blue")
    for bar, r in zip(bars, rows, strict=True):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2,
                f"{r['events_per_s']:,.0f}/s", va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("events/s, ratio to one primary (same run)")
    ax.set_xlim(0, max(1.2, max(ratios) * 1.3))
    ax.set_title("router on a Redis Cluster (3 primaries + 3 replicas), one machine")
    fig.text(0.01, 0.01, note, fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rules(rows: list[dict[str, Any]], path: Path, note: str) -> Path:
    prefixed = [r for r in rows if "prefixed" in r["rules"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        [r["count"] for r in prefixed],
        [r["events_per_s"] for r in prefixed],
        "o-",
        label="distinct literal prefixes (indexed)",
    )
    for r in rows:
        if "unanchored" in r["rules"]:
            ax.plot(
                [r["count"]],
                [r["events_per_s"]],
                "s",
                color="tab:red",
                label="unanchored, no literal (every rule tried)",
            )
    ax.axhline(0.8 * prefixed[0]["events_per_s"], color="grey", ls=":", label="0.8x one rule")
    ax.set(
        xscale="log",
        xlabel="rules in the watcher",
        ylabel="events/s routed",
        title="Router throughput against the number of rules",
    )
    return _save(fig, ax, path, note)


def _processes(by_target: dict[str, list[dict[str, Any]]], path: Path, note: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    names = {
        "raw": "raw list target",
        "actor": "Dramatiq target",
        "router-bound": "300 unanchored rules (router-bound)",
    }
    for n, (target, rows) in enumerate(by_target.items()):
        xs = [r["processes"] for r in rows]
        ax.plot(xs, [r["ratio"] for r in rows], "o-", label=names.get(target, target))
        below = (-12, 6, -12)[n % 3]  # lines that lie on each other: labels apart
        for r in rows:
            ax.annotate(
                f"{r['events_per_s'] / 1000:.0f}k/s, server {r['server_cpu_cores']:.2f}",
                (r["processes"], r["ratio"]),
                textcoords="offset points",
                xytext=(4, below),
                fontsize=7,
            )
    ax.axhline(1.3, color="grey", ls=":", label="1.3x one process")
    ax.set(
        xlabel="router --processes",
        ylabel="events/s, ratio to one process",
        xticks=xs,
        title="Router throughput against router processes (same run)",
    )
    return _save(fig, ax, path, note)


def _sizes(rows: list[dict[str, Any]], path: Path, note: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r["bytes"] for r in rows]
    ax.plot(xs, [r["events_per_s"] for r in rows], "o-", label="events/s")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="event size (bytes)",
        ylabel="events/s routed",
        title="Router throughput against event size",
    )
    twin = ax.twinx()
    twin.plot(xs, [r["mb_per_s"] for r in rows], "s--", color="tab:green", label="MB/s")
    twin.set(ylabel="MB/s of events")
    twin.legend(loc="lower right")
    return _save(fig, ax, path, note)


def _save(fig: Any, ax: Any, path: Path, note: str) -> Path:
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0) if ax.get_yscale() == "linear" else None
    ax.legend(loc="best", fontsize=8)
    fig.text(0.01, 0.01, note, fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    for written in draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])):
        print(written)

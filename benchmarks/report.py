"""The benchmark's results as tables: figures, ratios, and a PASS/MISS per target."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def show(out: dict[str, Any], console: Console) -> None:
    """The results, the ratios and the verdicts, as tables."""
    m = out["machine"]
    console.print(
        f"[bold]machine[/]: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB, "
        f"Python {m['python']}, {m['server']}; load {m['load_avg_at_start']}"
    )
    if "router_raw" in out:
        _figures(out, console)
    if "scaling" in out:
        _scaling(out["scaling"], console)
    if "cluster" in out:
        _cluster(out["cluster"], console)
    verdicts = Table(title="targets")
    verdicts.add_column("target")
    verdicts.add_column("measured", justify="right")
    verdicts.add_column("")
    for t in out.get("targets", []):
        mark = "[green]PASS[/]" if t["pass"] else "[red]MISS[/]"
        verdicts.add_row(t["target"], f"{t['value']:,.2f}", mark)
    console.print(verdicts)


def _figures(out: dict[str, Any], console: Console) -> None:
    figures = Table(title="figures")
    figures.add_column("what")
    figures.add_column("value", justify="right")
    figures.add_row("resc algorithm (baseline)", f"{out['baseline_events_per_s']:,.0f} events/s")
    for target in ("raw", "actor"):
        r = out[f"router_{target}"]
        figures.add_row(
            f"router, {target} target ({r['events']:,} events)",
            f"{r['events_per_s']:,.0f} events/s",
        )
        marks = ", ".join(f"{k:,}: {v:.0f}" for k, v in sorted(r["rss_marks_mb"].items()))
        figures.add_row(
            "  RSS MB start / peak / at events",
            f"{r['rss_start_mb']:.0f} / {r['rss_peak_mb']:.0f} / {marks}",
        )
        figures.add_row(
            "  CPU cores busy: router / server",
            f"{r['router_cpu_cores']:.2f} / {r['server_cpu_cores']:.2f}",
        )
    lat = out["latency"]
    figures.add_row(
        f"event-to-commit at {lat['offered_per_s']:,.0f}/s offered",
        f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.1f} ms"
        f" ({lat['received']:,}/{lat['sent']:,})",
    )
    ceil = out["ceiling"]
    for command, rate in ceil["per_command_per_s"].items():
        figures.add_row(f"server ceiling {command}", f"{rate:,.0f} commands/s")
    figures.add_row("server ceiling, resc's 5 commands", f"{ceil['events_per_s']:,.0f} events/s")
    for mode, c in out["chains"].items():
        figures.add_row(
            f"chain ({mode}) {c['title']}",
            f"{c['messages_per_s']:,.0f} msg/s; hop p50 {c['hop_p50_ms']:.1f} ms, "
            f"p99 {c['hop_p99_ms']:.1f} ms; worker CPU {c['worker_cpu_cores']:.2f} cores",
        )
    console.print(figures)
    console.print(f"server ceiling measured with {ceil['tool']}")
    ratios = Table(title="ratios")
    ratios.add_column("ratio")
    ratios.add_column("value", justify="right")
    for name, value in out["ratios"].items():
        ratios.add_row(name, f"{value:.2f}x")
    console.print(ratios)


def _table(title: str, columns: list[str], rows: list[list[str]], console: Console) -> None:
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _cluster(rows: list[dict[str, Any]], console: Console) -> None:
    """The cluster rows, each with its ratio to the single primary of the same run."""
    _table(
        "cluster (baseline: a single primary, one router)",
        ["row", "routers", "events/s", "ratio", "servers CPU", "routers CPU"],
        [
            [
                r["name"],
                str(r["routers"]),
                f"{r['events_per_s']:,.0f}",
                f"{r['ratio']:.2f}x",
                f"{r['servers_cpu']:.2f}",
                f"{r['routers_cpu']:.2f}",
            ]
            for r in rows
        ],
        console,
    )


def _scaling(sc: dict[str, Any], console: Console) -> None:
    """The scaling section: each row with its ratio to its baseline of the same run."""
    _table(
        "scaling: rules (baseline: 1 rule)",
        ["rules", "events/s", "ratio"],
        [[r["rules"], f"{r['events_per_s']:,.0f}", f"{r['ratio']:.2f}x"] for r in sc["rules"]],
        console,
    )
    rows = [
        [
            f"{target} x{r['processes']}",
            f"{r['events_per_s']:,.0f}",
            f"{r['ratio']:.2f}x",
            f"{r['router_cpu_cores']:.2f}",
            f"{r['server_cpu_cores']:.2f}",
        ]
        for target, by in sc["processes"].items()
        for r in by
    ]
    _table(
        "scaling: router --processes (baseline: 1 process)",
        ["target x processes", "events/s", "ratio", "router CPU", "server CPU"],
        rows,
        console,
    )
    _table(
        "scaling: event size (baseline: 100 B)",
        ["bytes", "events", "events/s", "MB/s", "ratio"],
        [
            [
                f"{r['bytes']:,}",
                f"{r['events']:,}",
                f"{r['events_per_s']:,.0f}",
                f"{r['mb_per_s']:.1f}",
                f"{r['ratio']:.2f}x",
            ]
            for r in sc["event_size"]
        ],
        console,
    )
    _table(
        "scaling: grown state (baseline: the 1-rule row)",
        ["row", "events/s", "ratio", "note"],
        [
            [
                r["row"],
                f"{r['events_per_s']:,.0f}",
                f"{r['ratio']:.2f}x",
                f"drained {r['seconds_from_start']:.2f} s after start"
                if "seconds_from_start" in r
                else "",
            ]
            for r in sc["state"]
        ],
        console,
    )
    rss = sc["rss"]
    marks = ", ".join(
        f"{k:,}: {v:.0f}" for k, v in sorted(rss["rss_marks_mb"].items(), key=lambda kv: int(kv[0]))
    )
    console.print(
        f"RSS across {rss['events']:,} events: start {rss['rss_start_mb']:.0f} MB, "
        f"peak {rss['rss_peak_mb']:.0f} MB, growth {rss['growth_mb']:.1f} MB; at {marks}"
    )
    _table(
        "scaling: Dramatiq worker processes (baseline: 1 process)",
        ["chain", "processes", "msg/s", "ratio"],
        [
            [mode, str(r["processes"]), f"{r['messages_per_s']:,.0f}", f"{r['ratio']:.2f}x"]
            for mode, by in sc["inline"].items()
            for r in by
        ],
        console,
    )

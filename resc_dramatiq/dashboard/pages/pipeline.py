"""Pipeline: every watcher's input list -> rules -> targets -> done events back, with rates.

A rule's rates are its counters per minute over the last full minutes of the history;
the chart is the last hour. A watcher is marked stalled when its input holds events and
no live router instance took any in the last minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.status import RuleStatus, WatcherStatus
from ...rules.model import Rule
from ..chart import Chart, chart
from ..context import Context, now_s
from ..graph_drawing import draw
from ..graph_figures import WatcherFigures, figures
from ..history import RATE_MINUTES, History, read_history
from ..pipeline_graph import build_graph

RULE_RATES = ("matched", "queued", "deduplicated", "dead")


@dataclass(frozen=True, slots=True)
class RuleView:
    """One rule on the pipeline page."""

    name: str
    pattern: str
    targets: tuple[str, ...]  # "actor on queue" or "list" per make entry
    totals: RuleStatus
    rates: dict[str, float]  # counter -> per minute
    chart: Chart


@dataclass(frozen=True, slots=True)
class WatcherView:
    """One watcher on the pipeline page."""

    index: int
    status: WatcherStatus
    rules: tuple[RuleView, ...]
    chart: Chart
    rates: dict[str, float]
    stalled: bool
    history: History


def _target(make: Any) -> str:
    target = make.target
    if target.actor is None:
        return f"list {target.queue.source}"
    return f"actor {target.actor} on {target.queue.source}"


def _rule(rule: Rule, totals: RuleStatus, history: History) -> RuleView:
    rates = {c: history.rate_per_min(f"{rule.name}|{c}") for c in RULE_RATES}
    series = {c: history.series(f"{rule.name}|{c}") for c in ("matched", "queued", "dead")}
    return RuleView(
        name=rule.name,
        pattern=rule.pattern.pattern,
        targets=tuple(_target(m) for m in rule.makes),
        totals=totals,
        rates=rates,
        chart=chart(series),
    )


def watcher_view(context: Context, index: int) -> WatcherView:
    """The pipeline of watcher ``index``, read now."""
    w = context.site.watchers[index]
    status = context.status(index)
    history = read_history(w.client, w.keys, now_s(w.client))
    totals = {r.name: r for r in status.rules}
    seen: dict[str, Rule] = {}
    for rule in w.rules.rules:  # rules sharing a name share their counters
        seen.setdefault(rule.name, rule)
    rules = tuple(_rule(rule, totals[name], history) for name, rule in seen.items())
    recent = sum(history.series("events")[-RATE_MINUTES:])
    alive = any(i.alive for i in status.instances)
    return WatcherView(
        index=index,
        status=status,
        rules=rules,
        chart=chart({c: history.series(c) for c in ("events", "queued", "dead")}),
        rates={c: history.rate_per_min(c) for c in ("events", "queued", "dead")},
        stalled=status.depth > 0 and (not alive or recent == 0),
        history=history,
    )


def routes(context: Context) -> list[Route]:
    """``/pipeline``."""
    graph = build_graph(context.site.ruleset, context.site.app)

    def pipeline(request: Request) -> Response:
        views = [watcher_view(context, i) for i in range(len(context.site.watchers))]
        read = [WatcherFigures(v.status, v.history, v.stalled) for v in views]
        drawing = draw(graph, figures(graph, read))
        values = {"watchers": views, "drawing": drawing}
        return context.renderer.page(request, "pipeline.html", values)

    return [Route("/pipeline", pipeline, name="pipeline")]

"""The live figures on the pipeline graph, from what the pipeline page reads anyway.

Per watcher: its status (:func:`~resc_dramatiq.ops.status.gather`) and its history of
counters per minute (:mod:`.history`). Rates are per minute over the last full minutes,
as in the page's tables. Marks are words (with a sign), never a colour alone: a stalled
watcher's list (``⚠ stalled``: events wait and no live router took any lately), a list
or rule whose dead letters rose in those minutes (``⚠ dead letters rising``), a
Dramatiq queue holding dead-lettered messages (``✖ N dead-lettered``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..ops.status import TargetStatus, WatcherStatus
from ..rules.templates import Template
from .graph_drawing import Figures
from .history import History
from .pipeline_graph import Graph, Node

STALLED = "⚠ stalled"
DEAD_RISING = "⚠ dead letters rising"


@dataclass(frozen=True, slots=True)
class WatcherFigures:
    """What the page read of one watcher."""

    status: WatcherStatus
    history: History
    stalled: bool


def figures(graph: Graph, watchers: Sequence[WatcherFigures]) -> Figures:
    """The figures of ``graph``'s nodes and edges."""
    lines: dict[str, str] = {}
    marks: dict[str, tuple[str, ...]] = {}
    targets = [t for w in watchers for t in w.status.targets]
    for node in graph.nodes:
        lines[node.id], marks[node.id] = _node(node, watchers, targets)
    rates: dict[int, float] = {}
    stalled: set[int] = set()
    for index, edge in enumerate(graph.edges):
        if edge.watcher is None or edge.counter is None:
            continue
        rates[index] = watchers[edge.watcher].history.rate_per_min(edge.counter)
        if edge.kind == "matched" and watchers[edge.watcher].stalled:
            stalled.add(index)
    return Figures(lines, marks, rates, frozenset(stalled))


def _node(
    node: Node, watchers: Sequence[WatcherFigures], targets: Sequence[TargetStatus]
) -> tuple[str, tuple[str, ...]]:
    if node.kind == "list":
        return _list(node, watchers)
    if node.rule is not None and node.watcher is not None:
        return _rule(node, watchers[node.watcher].history)
    return _target(node, targets)


def _list(node: Node, watchers: Sequence[WatcherFigures]) -> tuple[str, tuple[str, ...]]:
    if node.watcher is None:
        return "", ()
    w = watchers[node.watcher]
    s, rate = w.status, w.history.rate_per_min
    line = f"depth {s.depth} · dead {s.dead_letter} · {rate('events'):.1f} events/min"
    marks = (STALLED,) if w.stalled else ()
    return line, marks + ((DEAD_RISING,) if rate("dead") > 0 else ())


def _rule(node: Node, history: History) -> tuple[str, tuple[str, ...]]:
    def rate(counter: str) -> float:
        return history.rate_per_min(f"{node.rule}|{counter}")

    if node.kind == "join":
        line = f"completed {rate('completed'):.1f}/min · late {rate('late'):.1f}/min"
    elif node.kind == "fail":
        line = f"failed {rate('failed'):.1f}/min"
    else:
        line = f"dedup {rate('deduplicated'):.1f}/min · dead {rate('dead'):.1f}/min"
    return line, (DEAD_RISING,) if rate("dead") > 0 else ()


def _target(node: Node, targets: Sequence[TargetStatus]) -> tuple[str, tuple[str, ...]]:
    kind = "dramatiq" if node.kind == "actor" else "list"
    template = Template.compile(node.queue or "")
    found = {t.key: t for t in targets if t.kind == kind and template.can_render(t.key)}
    depth = sum(t.depth for t in found.values())
    many = f" in {len(found)} lists" if len(found) > 1 else ""
    if kind == "list":
        return f"depth {depth}{many}", ()
    delayed = sum(t.delayed or 0 for t in found.values())
    dead = sum(t.dead_lettered or 0 for t in found.values())
    line = f"ready {depth} · delayed {delayed} · dead {dead}{many}"
    return line, (f"✖ {dead} dead-lettered",) if dead else ()

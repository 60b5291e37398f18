"""The pipeline graph ready to draw: boxes sized to their text, laid out, live figures on.

A node has four lines (what it is and its name; its pattern, queue or group; its
figures; its marks) in a monospaced font, so its size is known from its text alone and
the layout (:mod:`.graph_layout`) depends on the graph's shape only. Names longer than
:data:`MAX_CHARS` are cut (the full text is the node's tooltip). Every text here is
plain text: the template escapes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .graph_layout import Layout, LayoutUnavailable, Shape, layout
from .pipeline_graph import KINDS, Graph, Node

#: Pixels per character of the node text (12 px monospace) and per line.
CHAR_PX = 7.3
LINE_PX = 16.0
PAD_PX = 8.0
#: A join's hexagon leaves this much more room on each side.
HEX_PX = 14.0
#: Characters of a node's widest line, at least and at most.
MIN_CHARS = 36
MAX_CHARS = 44
#: The widest label each edge kind can have: what the layout leaves room for.
LABELS = {
    "matched": "9999.9/min",
    "queued": "9999.9/min",
    "fan-out": "fan-out 9999.9/min",
    "expired": "expired 9999.9/min",
    "done": "done",
    "failed": "failed",
    "group": "group",
}
#: Edge kinds that rank their head after their tail (the others point back or across).
RANKING = {"matched", "queued", "fan-out", "expired"}


@dataclass(frozen=True, slots=True)
class Figures:
    """What Redis says now: a figures line and marks per node id, a rate per edge index."""

    lines: Mapping[str, str] = field(default_factory=dict)
    marks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rates: Mapping[int, float] = field(default_factory=dict)
    stalled_edges: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class DrawnNode:
    """A node with its place and its texts."""

    node: Node
    kind_label: str
    name: str
    detail: str
    figures: str
    marks: str
    x: float
    y: float
    width: float
    height: float
    points: str  # the hexagon of a join or a failure rule ("" for a box)
    text_x: float  # where its lines start

    def line_y(self, line: int) -> float:
        """The baseline of text line ``line`` (0 to 3)."""
        return self.y + PAD_PX + LINE_PX * (line + 1) - 4


@dataclass(frozen=True, slots=True)
class DrawnEdge:
    """An edge with its path and its label."""

    kind: str
    d: str
    label: str
    label_x: float | None
    label_y: float | None
    stalled: bool
    title: str


@dataclass(frozen=True, slots=True)
class Drawing:
    """What the page draws; ``problem`` says why there is no drawing."""

    width: float
    height: float
    nodes: tuple[DrawnNode, ...]
    edges: tuple[DrawnEdge, ...]
    left_out: tuple[tuple[str, int], ...]
    problem: str | None = None


def _chars(node: Node) -> int:
    return max(MIN_CHARS, min(MAX_CHARS, len(KINDS[node.kind]) + 1 + len(node.name)))


def _size(node: Node) -> tuple[float, float]:
    hexagon = 2 * HEX_PX if node.kind in ("join", "fail") else 0.0
    return _chars(node) * CHAR_PX + 2 * PAD_PX + hexagon, 4 * LINE_PX + 2 * PAD_PX


def shape_of(graph: Graph) -> Shape:
    """What the layout of ``graph`` depends on."""
    nodes = tuple((n.id, *_size(n)) for n in graph.nodes)
    edges = tuple((e.tail, e.head, LABELS[e.kind], e.kind in RANKING) for e in graph.edges)
    return Shape(nodes, edges)


def draw(graph: Graph, figures: Figures) -> Drawing:
    """``graph`` laid out, with ``figures``; a drawing with a ``problem`` when ``dot``
    cannot lay it out."""
    try:
        placed = layout(shape_of(graph))
    except LayoutUnavailable as e:
        return Drawing(0, 0, (), (), graph.left_out, problem=str(e))
    nodes = tuple(_node(n, placed, figures) for n in graph.nodes)
    edges = []
    for index, (edge, path) in enumerate(zip(graph.edges, placed.paths, strict=True)):
        tail, head = graph.node(edge.tail).name, graph.node(edge.head).name
        edges.append(
            DrawnEdge(
                kind=edge.kind,
                d=path.d,
                label=_label(edge.kind, figures.rates.get(index)),
                label_x=path.label_x,
                label_y=path.label_y,
                stalled=index in figures.stalled_edges,
                title=f"{tail} → {head}: {edge.kind}",
            )
        )
    return Drawing(placed.width, placed.height, nodes, tuple(edges), graph.left_out)


def _label(kind: str, rate: float | None) -> str:
    if kind not in RANKING:
        return kind
    if rate is None:
        return ""
    return f"{rate:.1f}/min" if kind in ("matched", "queued") else f"{kind} {rate:.1f}/min"


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else f"{text[: chars - 1]}…"


def _node(node: Node, placed: Layout, figures: Figures) -> DrawnNode:
    box = placed.boxes[node.id]
    kind = KINDS[node.kind]
    chars = _chars(node)
    points = ""
    if node.kind in ("join", "fail"):
        x0, x1, y0, y1 = box.x, box.x + box.width, box.y, box.y + box.height
        ym = (y0 + y1) / 2
        corners = [(x0, ym), (x0 + HEX_PX, y0), (x1 - HEX_PX, y0), (x1, ym)]
        corners += [(x1 - HEX_PX, y1), (x0 + HEX_PX, y1)]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in corners)
    return DrawnNode(
        node=node,
        kind_label=kind,
        name=_fit(node.name, max(8, chars - len(kind) - 1)),
        detail=_fit(node.detail, chars),
        figures=_fit(figures.lines.get(node.id, ""), chars),
        marks=_fit(" · ".join(figures.marks.get(node.id, ())), chars),
        x=box.x,
        y=box.y,
        width=box.width,
        height=box.height,
        points=points,
        text_x=box.x + PAD_PX + (HEX_PX if points else 0.0),
    )

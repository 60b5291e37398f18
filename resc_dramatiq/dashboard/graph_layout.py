"""Where the boxes and arrows of a graph go: Graphviz's ``dot`` (layered layout), run once.

``dot`` only places things: it is given node ids of our own making (``n12``), sizes in
pixels and edge labels from a fixed vocabulary, never a name from the config or Redis,
and answers in its ``plain`` format (positions and spline control points), which this
module reads back; the SVG itself is drawn by the page's template, which escapes every
name. A layout depends only on the graph's shape, so it is computed once per shape
(cached) and the live refresh never runs ``dot`` again. Without the ``dot`` program
(Debian's ``graphviz`` package) :class:`LayoutUnavailable` says what to install.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

#: Pixels per inch, dot's unit (a point is a pixel here).
PX = 72.0
#: Seconds one ``dot`` run may take (a capped graph takes well under one).
DOT_TIMEOUT_S = 20.0
#: What may be said to ``dot``: ids, numbers and the fixed label texts.
SAFE = re.compile(r"[A-Za-z0-9 ./=-]*")


class LayoutUnavailable(Exception):
    """Raised when the graph cannot be laid out: ``dot`` is missing or failed."""


@dataclass(frozen=True, slots=True)
class Box:
    """A node's place, top-left corner and size in pixels."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Path:
    """An edge as an SVG path (cubic Béziers), and where its label goes (if it has one)."""

    d: str
    label_x: float | None
    label_y: float | None


@dataclass(frozen=True, slots=True)
class Layout:
    """The whole drawing: its size, a box per node id, a path per edge (in order)."""

    width: float
    height: float
    boxes: dict[str, Box]
    paths: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class Shape:
    """What the layout depends on: node ids with sizes; edges with a label text and
    whether they rank their head after their tail (feedback edges do not)."""

    nodes: tuple[tuple[str, float, float], ...]  # id, width, height in pixels
    edges: tuple[tuple[str, str, str, bool], ...]  # tail, head, label ("": none), ranks


def layout(shape: Shape) -> Layout:
    """The layout of ``shape`` (cached per shape). Raises :class:`LayoutUnavailable`."""
    return _parse(_run_dot(_source(shape)), [(tail, head) for tail, head, _, _ in shape.edges])


def _source(shape: Shape) -> str:
    lines = [
        "digraph g {",
        "rankdir=LR; nodesep=0.35; ranksep=0.9; splines=true;",
        'node [shape=box, fixedsize=true, label=""]; edge [fontsize=10, arrowsize=0.8];',
    ]
    for node_id, width, height in shape.nodes:
        lines.append(f"{_safe(node_id)} [width={width / PX:.3f}, height={height / PX:.3f}];")
    for tail, head, label, ranks in shape.edges:
        attrs = [f'label="{_safe(label)}"'] if label else []
        attrs += [] if ranks else ["constraint=false"]
        lines.append(f"{_safe(tail)} -> {_safe(head)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines)


def _safe(text: str) -> str:
    if SAFE.fullmatch(text) is None:
        raise ValueError(f"not for dot: {text!r}")  # only our own ids and labels go there
    return text


@lru_cache(maxsize=32)
def _run_dot(source: str) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise LayoutUnavailable(
            "the pipeline graph needs Graphviz's dot program, which is not installed "
            "(apt-get install graphviz, or your system's graphviz package)"
        )
    try:
        done = subprocess.run(
            [dot, "-Tplain"], input=source, capture_output=True, text=True, timeout=DOT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise LayoutUnavailable(f"dot took more than {DOT_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise LayoutUnavailable(f"dot failed (exit {done.returncode}): {done.stderr[:300]}")
    return done.stdout


def _parse(plain: str, ends: list[tuple[str, str]]) -> Layout:
    """Read ``plain`` back; ``ends`` are the edges' (tail, head) in the order given to dot,
    which writes them in its own order (edges between the same two nodes keep theirs)."""
    width = height = 0.0
    boxes: dict[str, Box] = {}
    edges: dict[tuple[str, str], list[Sequence[str]]] = {}
    for line in plain.splitlines():
        words = shlex.split(line)
        if words and words[0] == "graph":
            width, height = float(words[2]) * PX, float(words[3]) * PX
        elif words and words[0] == "node":
            x, y, w, h = (float(v) * PX for v in words[2:6])
            boxes[words[1]] = Box(x - w / 2, height - y - h / 2, w, h)
        elif words and words[0] == "edge":
            edges.setdefault((words[1], words[2]), []).append(words)
    try:
        paths = tuple(_path(edges[end].pop(0), height) for end in ends)
    except (KeyError, IndexError):
        raise LayoutUnavailable("dot left out an edge") from None
    return Layout(width, height, boxes, paths)


def _path(words: Sequence[str], height: float) -> Path:
    count = int(words[3])
    numbers = [float(v) * PX for v in words[4 : 4 + 2 * count]]
    points = [f"{x:.1f},{height - y:.1f}" for x, y in zip(numbers[::2], numbers[1::2], strict=True)]
    curves = " ".join(f"C {' '.join(points[i : i + 3])}" for i in range(1, len(points), 3))
    rest = words[4 + 2 * count :]
    if len(rest) >= 5:  # label, x, y, style, color
        return Path(f"M {points[0]} {curves}", float(rest[1]) * PX, height - float(rest[2]) * PX)
    return Path(f"M {points[0]} {curves}", None, None)

"""Charts drawn on the server as inline SVG: numbers in, coordinates out (no script)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH = 360
HEIGHT = 60


@dataclass(frozen=True, slots=True)
class Line:
    """One series as an SVG polyline."""

    name: str
    points: str  # "x,y x,y ...", only numbers
    peak: int


@dataclass(frozen=True, slots=True)
class Chart:
    """Several series sharing one scale."""

    width: int
    height: int
    lines: tuple[Line, ...]
    peak: int


def chart(series: Mapping[str, Sequence[int]], width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """The series scaled to ``width`` x ``height``, the highest value at the top."""
    peak = max((max(values, default=0) for values in series.values()), default=0)
    lines = tuple(
        Line(name, _points(values, peak, width, height), max(values, default=0))
        for name, values in series.items()
    )
    return Chart(width, height, lines, peak)


def _points(values: Sequence[int], peak: int, width: int, height: int) -> str:
    if not values:
        return ""
    step = width / max(1, len(values) - 1)
    scale = (height - 2) / peak if peak else 0.0
    return " ".join(f"{i * step:.1f},{height - 1 - v * scale:.1f}" for i, v in enumerate(values))

"""Charts drawn on the server as inline SVG: numbers in, coordinates out (no script).

A chart of counters per minute, the last minute being the current one: a value scale
on the left (from 0 to a round number at or above the peak, in events per minute) and
time ticks below (every 15 minutes, counted back from now).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

WIDTH = 640
HEIGHT = 180
#: Room around the plot for the scale (left) and the time ticks (below).
LEFT = 64
RIGHT = 12
TOP = 10
BOTTOM = 24
#: Minutes between two time ticks.
TICK_MINUTES = 15


@dataclass(frozen=True, slots=True)
class Line:
    """One series as an SVG polyline."""

    name: str
    points: str  # "x,y x,y ...", only numbers
    peak: int


@dataclass(frozen=True, slots=True)
class Tick:
    """A mark on an axis: where (pixels along it) and its text."""

    at: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Several series sharing one scale, with the plot's place and its axes' ticks."""

    width: int
    height: int
    lines: tuple[Line, ...]
    peak: int
    left: int = LEFT
    top: int = TOP
    plot_width: int = WIDTH - LEFT - RIGHT
    plot_height: int = HEIGHT - TOP - BOTTOM
    y_ticks: tuple[Tick, ...] = ()  # at: the y of the value
    x_ticks: tuple[Tick, ...] = ()  # at: the x of the minute


def chart(series: Mapping[str, Sequence[int]], width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """The series scaled to ``width`` x ``height`` with their axes; the scale's top is
    the round number at or above the highest value."""
    peak = max((max(values, default=0) for values in series.values()), default=0)
    scale_top = round_up(peak)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    count = max((len(values) for values in series.values()), default=0)
    step = plot_w / max(1, count - 1)

    def y_of(value: float) -> float:
        return TOP + plot_h - value * plot_h / scale_top

    lines = tuple(
        Line(name, _points(values, step, y_of), max(values, default=0))
        for name, values in series.items()
    )
    y_ticks = tuple(Tick(y_of(v), f"{v:g}/min") for v in (0, scale_top / 2, scale_top))
    x_ticks = tuple(
        Tick(LEFT + (count - 1 - back) * step, "now" if back == 0 else f"-{back} min")
        for back in range(0, count, TICK_MINUTES)
    )
    return Chart(width, height, lines, peak, LEFT, TOP, plot_w, plot_h, y_ticks, x_ticks)


def round_up(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten at or above ``value`` (1 at least)."""
    if value <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _points(values: Sequence[int], step: float, y_of: Callable[[float], float]) -> str:
    return " ".join(f"{LEFT + i * step:.1f},{y_of(v):.1f}" for i, v in enumerate(values))

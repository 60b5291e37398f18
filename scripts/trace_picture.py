"""Draw docs/images/trace.svg: the spans of one chain, as a tracing backend shows them.

``.venv/bin/python scripts/trace_picture.py [OUT.svg]`` runs the chain of
docs/tracing.md (``cut`` -> ``weigh`` and ``inspect`` -> the ``pack`` join) on the
testing kit's embedded server, in the worker and through an in-process router, with
``Tracing`` on an OpenTelemetry SDK whose in-memory exporter keeps the spans; then draws
them as a waterfall: one row per span, indented under its parent, its bar on the time
axis, its links drawn as dashed lines to the spans they name. No backend is needed.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan

ROW, LEFT, BAR_W, TOP = 26, 420, 520, 46


def waterfall(spans: Sequence[ReadableSpan], title: str) -> str:
    """An SVG waterfall of ``spans`` (one trace or several: each trace's spans together)."""
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in by_id else None
        children.setdefault(parent, []).append(s)
    order: list[tuple[ReadableSpan, int]] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            order.append((s, depth))
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    start = min(s.start_time or 0 for s in spans)
    end = max(s.end_time or 0 for s in spans)
    scale = BAR_W / max(1, end - start)
    row_of = {s.context.span_id: i for i, (s, _) in enumerate(order)}
    height = TOP + ROW * len(order) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + BAR_W + 140}" '
        f'height="{height}" font-family="DejaVu Sans, sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="12" y="22" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]
    traces = sorted({s.context.trace_id for s in spans})
    colours = ["#4878cf", "#d65f5f", "#6acc65", "#b47cc7"]
    links_drawn = 0
    for i, (s, depth) in enumerate(order):
        y = TOP + i * ROW
        x0 = LEFT + ((s.start_time or 0) - start) * scale
        width = max(2.0, ((s.end_time or 0) - (s.start_time or 0)) * scale)
        colour = colours[traces.index(s.context.trace_id) % len(colours)]
        kind = str(s.kind).rsplit(".", 1)[-1].lower()
        label = f"{s.name}  ({kind})"
        out.append(
            f'<text x="{12 + 16 * depth}" y="{y + 15}">{html.escape(label)}</text>'
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{width:.1f}" height="14" rx="2" '
            f'fill="{colour}"/>'
            f'<text x="{x0 + width + 6:.1f}" y="{y + 15}" fill="#555">'
            f"{((s.end_time or 0) - (s.start_time or 0)) / 1e6:.1f} ms</text>"
        )
        for link in s.links:
            j = row_of.get(link.context.span_id)
            if j is None:
                continue
            links_drawn += 1
            x = LEFT - 8 - 7 * (links_drawn % 12)
            y0, y1 = TOP + j * ROW + 11, y + 11
            out.append(
                f'<path d="M {LEFT - 2} {y0} H {x} V {y1} H {LEFT - 2}" fill="none" '
                f'stroke="{colour}" stroke-opacity="0.6" stroke-dasharray="3,2"/>'
                f'<circle cx="{LEFT - 2}" cy="{y1}" r="2.5" fill="{colour}"/>'
            )
    legend = "one colour per trace; dashed: a span link (join members, commit batches)"
    out.append(f'<text x="12" y="{height - 14}" fill="#555">{legend}</text></svg>')
    return "\n".join(out)


if __name__ == "__main__":
    from tests.tracing_chain import run_chain  # the chain the tests trace

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/trace.svg")
    spans = run_chain()
    target.write_text(waterfall(spans, "cut -> weigh, inspect -> pack (join), through the router"))
    print(f"{len(spans)} spans drawn to {target}")

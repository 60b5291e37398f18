"""Watchers: input depth, events in flight per router instance, and the dead letters.

The dead letters are read a page at a time (``ops.dead.list_dead``: an ``LRANGE`` of one
page, or at most ``ops.dead.SCAN`` entries when filtered); each row carries its entry's
exact bytes as hex, which the actions read back (see :mod:`..actions`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.dead import list_dead
from ...rules.patterns import PatternError, compile_pattern
from ..context import Context, now_s
from ..render import int_param


def routes(context: Context) -> list[Route]:
    """``/watchers`` and ``/watchers/{index}``."""

    def listing(request: Request) -> Response:
        statuses = [context.status(i) for i in range(len(context.site.watchers))]
        return context.renderer.page(request, "watchers.html", {"statuses": statuses})

    def one(request: Request) -> Response:
        index, w = context.watcher(request)
        match = request.query_params.get("match", "")
        try:
            pattern = compile_pattern(match) if match else None  # RE2: linear time
            problem = ""
        except PatternError as e:
            pattern, problem = None, f"bad regex: {e}"
        offset = int_param(request, "offset")
        page = list_dead(
            w.client, w.keys, match=pattern, offset=offset, limit=context.settings.page_size
        )
        return context.renderer.page(
            request,
            "watcher.html",
            {
                "index": index,
                "watcher": w,
                "status": context.status(index),
                "page": page,
                "offset": offset,
                "match": match,
                "problem": problem,
                "now_s": now_s(w.client),
            },
        )

    return [
        Route("/watchers", listing, name="watchers"),
        Route("/watchers/{index:int}", one, name="watcher"),
    ]

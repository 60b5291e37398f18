"""Watchers: input depth, events in flight per router instance, and the dead letters.

The dead letters are read a page at a time (``ops.dead.list_dead``: an ``LRANGE`` of one
page, or at most ``ops.dead.SCAN`` entries when filtered); each row carries its entry's
exact bytes as hex, which the actions read back (see :mod:`..actions`); a long one is
cut, and answered whole by ``/watchers/{index}/dead/entry?ref=`` (:mod:`..long_values`).
A dead-letter key of another type shows what it holds instead of the letters.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.dead import DeadPage, list_dead
from ...ops.odd_keys import odd_types
from ...rules.patterns import PatternError, compile_pattern
from ..context import Context, now_s
from ..long_values import PREFIX, resolve
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
        odd = odd_types(w.client, {w.keys.dead: "list"})
        page = DeadPage((), 0, None) if odd else list_dead(
            w.client, w.keys, match=pattern, offset=offset, limit=context.settings.page_size
        )  # fmt: skip
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
                "odd": odd,
                "now_s": now_s(w.client),
            },
        )

    def whole(request: Request) -> Response:
        _, w = context.watcher(request)
        ref = request.query_params.get("ref", "")
        entry = resolve(w.client, w.keys.dead, ref) if ref.startswith(PREFIX) else None
        if entry is None:
            raise HTTPException(404, "no such dead letter (requeued or dropped meanwhile?)")
        disposition = 'attachment; filename="dead-letter.json"'
        headers = {"content-disposition": disposition}
        return Response(entry, media_type="text/plain; charset=utf-8", headers=headers)

    return [
        Route("/watchers", listing, name="watchers"),
        Route("/watchers/{index:int}", one, name="watcher"),
        Route("/watchers/{index:int}/dead/entry", whole, name="dead_entry"),
    ]

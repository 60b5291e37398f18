"""Why: a task's or a message's causes back to its root, each step's status read now.

The chain of ``resc-dramatiq why`` (:func:`~...ops.why.why`), asked in a form:
``/why?q=<task or message id>``. The question is bounded (``MAX_INPUT`` characters:
longer is a 400), looked for on each watcher's Redis; every value shown is escaped by
the templates, cut when long, and odd keys are named, never trusted.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...config.model import WatcherSpec
from ...ops.why import MAX_INPUT, why
from ..context import Context


def routes(context: Context) -> list[Route]:
    """``/why``."""

    def page(request: Request) -> Response:
        asked = request.query_params.get("q", "")
        if len(asked) > MAX_INPUT:
            raise HTTPException(400, f"ask about at most {MAX_INPUT} characters")
        chain = None
        if asked:
            namespace = context.site.namespace
            for client, specs in _by_client(context):
                chain = why(client, specs, namespace, asked)
                if chain is not None:
                    break
        values = {"asked": asked, "chain": chain, "missing": bool(asked) and chain is None}
        return context.renderer.page(request, "why.html", values)

    return [Route("/why", page, name="why")]


def _by_client(context: Context) -> list[tuple[redis.Redis, Sequence[WatcherSpec]]]:
    """The watchers' specs grouped by the Redis they live on, in order."""
    found: dict[int, tuple[redis.Redis, list[WatcherSpec]]] = {}
    for w in context.site.watchers:
        found.setdefault(id(w.client), (w.client, []))[1].append(w.rules.spec)
    return list(found.values())

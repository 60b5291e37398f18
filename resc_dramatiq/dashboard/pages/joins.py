"""Joins: open groups per join rule (how many, the oldest, members seen of expected, the
next deadline), one group's members, and its complete or drop actions.

The figures are those of ``status`` (:func:`~...ops.join_status.join_status`: bounded
reads of the join index, odd keys named); one group is read with
:func:`~...store.join_ops.read_group` (at most ``MAX_FIELDS`` fields). A group is
addressed by its name as hex in a form (exact, whatever its characters); the actions
(:mod:`..actions`) act only on a group of the watcher's own join rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.join_status import JoinStatus, join_status
from ...ops.odd_keys import Reads
from ...store.join_ops import GroupState, read_group
from ...store.joins import JoinKeys
from ..context import Context, now_s
from ..site import WatcherSite


@dataclass(frozen=True, slots=True)
class WatcherJoins:
    """One watcher's join rules as the page shows them."""

    index: int
    input: str
    joins: list[JoinStatus]
    odd: list[str]


def join_rules(w: WatcherSite) -> set[str]:
    """The names of ``w``'s join rules (not those that fail groups)."""
    return {r.name for r in w.rules.rules if r.join is not None and not r.join.fail}


def routes(context: Context) -> list[Route]:
    """``/joins`` and ``/joins/{index}/group?group=``."""

    def listing(request: Request) -> Response:
        views = []
        for index, w in enumerate(context.site.watchers):
            if not join_rules(w):
                continue
            reads = Reads(w.client)
            stats = reads.counters(w.keys.stats)
            found = join_status(
                w.rules, reads, stats, now_s(w.client), oldest=context.settings.page_size
            )
            odd = list(dict.fromkeys(str(o) for o in reads.odd))
            views.append(WatcherJoins(index, w.input, found, odd))
        return context.renderer.page(request, "joins.html", {"watchers": views})

    def one(request: Request) -> Response:
        index, w = context.watcher(request)
        group = group_of(w, request.query_params.get("group", ""))
        values: dict[str, Any] = {"index": index, "watcher": w, "group": group}
        values["now_s"] = now_s(w.client)
        return context.renderer.page(request, "join.html", values)

    return [
        Route("/joins", listing, name="joins"),
        Route("/joins/{index:int}/group", one, name="join"),
    ]


def group_of(w: WatcherSite, name: str) -> GroupState:
    """Group ``name`` of ``w``'s join keys; 404 when there is none, or when it belongs to
    a join rule of another watcher (sharing the keys)."""
    if not name:
        raise HTTPException(404, "no group named")
    group = read_group(w.client, JoinKeys.of(w.input), name)
    if not group.state:
        raise HTTPException(404, "no such join group (closed, and its tombstone expired?)")
    if group.rule and group.rule not in join_rules(w):
        raise HTTPException(404, f"not a group of the join rules of {w.input}")
    return group

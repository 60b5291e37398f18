"""Schedules: each schedule's spec and target, its last firing and its next ones.

The last firing (tick, lag, the router instance that fired it, ticks fired in all) is
the schedule's Redis state as ``status`` reads it (:func:`~...ops.schedule_status`); the
next firings are those ``explain --schedules`` prints
(:func:`~...rules.explain.explain_schedules`), after the Redis clock. A schedule lives
on the Redis of the watcher whose router fires it (its owner). Read-only: no action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.schedule_status import ScheduleStatus, schedule_status
from ...rules.explain import explain_schedules
from ...rules.schedules import compile_schedules
from ..context import Context, now_s

#: Next firings shown per schedule.
NEXT_FIRINGS = 5


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """One schedule as the page shows it."""

    status: ScheduleStatus
    event: str  # the event template, as written
    catch_up: str
    owner: str  # input list of the watcher whose router fires it
    redis_label: str
    firings: list[dict[str, Any]]  # explain_schedules' firings: tick, local, event, kwargs


def routes(context: Context) -> list[Route]:
    """``/schedules``."""
    schedules = compile_schedules(context.site.ruleset.config)
    by_input = {w.input: w for w in context.site.watchers}

    def page(request: Request) -> Response:
        views = []
        for schedule in schedules:
            w = by_input.get(schedule.owner, context.site.watchers[0])
            now = now_s(w.client)
            [report] = explain_schedules([schedule], at=int(now), count=NEXT_FIRINGS)
            views.append(
                ScheduleView(
                    status=schedule_status(schedule, w.client, now, context.site.namespace),
                    event=schedule.event.source,
                    catch_up=schedule.spec.catch_up,
                    owner=schedule.owner,
                    redis_label=w.redis_label,
                    firings=report["firings"],
                )
            )
        return context.renderer.page(request, "schedules.html", {"schedules": views})

    return [Route("/schedules", page, name="schedules")]

"""The dashboard's ASGI app: its routes, static files, access guard and error pages."""

from __future__ import annotations

import secrets

import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..errors import WrongType
from ..ops.odd_keys import is_wrong_type
from ..store.resilience import is_transient
from . import actions
from .context import Context
from .following import Following, FollowingMiddleware
from .hosts import AllowedHosts
from .pages import dedup, joins, pipeline, processes, schedules, targets, watchers, why
from .render import HERE, Renderer
from .security import Guard
from .site import Settings, Site


def create_app(site: Site, settings: Settings | None = None) -> ASGIApp:
    """The dashboard of ``site`` (every watcher with its Redis client).

    Raises ``ValueError`` when an allowed host of ``settings`` is no host name.
    """
    settings = settings or Settings()
    csrf = secrets.token_urlsafe(32)  # per process: a restart asks for a reload
    renderer = Renderer(
        read_only=settings.read_only,
        csrf=csrf,
        refresh_s=settings.refresh_s,
        page_size=settings.page_size,
    )
    hosts = AllowedHosts(settings.allowed_hosts)
    context = Context(site, settings, renderer, csrf, hosts)
    following = Following(w.client for w in site.watchers)

    def home(request: Request) -> Response:
        return RedirectResponse("/pipeline", 303)

    def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return PlainTextResponse(f"{exc.status_code}: {exc.detail}\n", exc.status_code)

    def unreachable(request: Request, exc: Exception) -> Response:
        if is_wrong_type(exc) or isinstance(exc, WrongType):
            # a key changed type between the page's check and its read: no outage
            return PlainTextResponse(f"409: {_refused(exc)}; reload the page\n", 409)
        if isinstance(exc, redis.ResponseError) and not is_transient(exc):
            return PlainTextResponse(f"502: Redis refused a command: {_refused(exc)}\n", 502)
        # the error's type only: its text could name the server with its credentials
        following.failed(exc)
        return PlainTextResponse(f"503: Redis unreachable ({type(exc).__name__})\n", 503)

    routes = [
        Route("/", home),
        *pipeline.routes(context),
        *watchers.routes(context),
        *targets.routes(context),
        *dedup.routes(context),
        *processes.routes(context),
        *schedules.routes(context),
        *joins.routes(context),
        *why.routes(context),
        *actions.routes(context),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {HTTPException: error, redis.RedisError: unreachable, WrongType: unreachable}
    app = Starlette(routes=routes, exception_handlers=handlers)
    followed = FollowingMiddleware(app, following)
    return Guard(followed, hosts=hosts, token=settings.token, password=settings.password)


def _refused(error: Exception) -> str:
    """A refusal of Redis as text: the server's own reply (it names no credentials)."""
    return f"{type(error).__name__}: {str(error)[:300]}"

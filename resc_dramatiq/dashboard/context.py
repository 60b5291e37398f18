"""What every page handler shares: the site, the settings, the renderer, the CSRF token."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..ops.status import WatcherStatus, gather
from ..rules.templates import Template
from .hosts import AllowedHosts
from .render import Renderer
from .site import Settings, Site, WatcherSite


@dataclass(frozen=True, slots=True)
class Context:
    """The dashboard's state, built once by :func:`~.app.create_app`."""

    site: Site
    settings: Settings
    renderer: Renderer
    csrf: str
    hosts: AllowedHosts

    def watcher(self, request: Request) -> tuple[int, WatcherSite]:
        """The watcher of the path's ``{index}``; 404 when there is none."""
        index = int(request.path_params["index"])
        if not 0 <= index < len(self.site.watchers):
            raise HTTPException(404, "no such watcher")
        return index, self.site.watchers[index]

    def status(self, index: int) -> WatcherStatus:
        """What ``resc-dramatiq status`` shows of watcher ``index``, read now."""
        w = self.site.watchers[index]
        status = gather(self.site.one(index), w.client, namespace=self.site.namespace)[0]
        return dataclasses.replace(status, redis=w.redis_label)


def now_s(client: redis.Redis) -> float:
    """The Redis clock, in seconds: ages agree with the router's heartbeats."""
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def named_by(name: str, templates: Iterable[Template]) -> bool:
    """Whether ``name`` is a name one of ``templates`` renders (what a page may address).

    Linear in the length of ``name`` (no regex: see :meth:`Template.can_render`).
    """
    return any(t.can_render(name) for t in templates)

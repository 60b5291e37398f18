"""The web dashboard: pipelines, dead letters, Dramatiq queues, dedup sets, processes.

A Starlette app over the read functions of :mod:`resc_dramatiq.ops` and the store's key
names; it sits above ``ops/`` and below ``cli/`` (nothing below imports it).
:func:`create_app` builds it from a :class:`Site` (the watchers and their Redis) and
:class:`Settings` (read-only, access token, password); ``resc-dramatiq dashboard``
serves it with uvicorn. Every page is paginated and every Redis read bounded; every
action is a POST with a CSRF token, behind a confirmation page; every value from Redis
is rendered as text (Jinja2 autoescaping, a Content-Security-Policy without inline
scripts).
"""

from .app import create_app
from .site import Settings, Site, WatcherSite

__all__ = ["Settings", "Site", "WatcherSite", "create_app"]

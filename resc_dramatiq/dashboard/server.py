"""Serving the dashboard with uvicorn: in the foreground (the CLI) or in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``; ``OSError`` when it cannot be had (the
    port in use, say), before anything claims to serve there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family)


def serve(app: ASGIApp, *, sock: socket.socket) -> None:
    """Serve ``app`` on the listening ``sock`` until interrupted (Ctrl-C, SIGTERM)."""
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    # uvicorn raises the Ctrl-C it caught again once it stopped (uvicorn.run swallows it)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


class ServerThread:
    """``app`` served from a thread, for a block: ``with ServerThread(app, port=p):``."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)
        self.url = f"http://{host}:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

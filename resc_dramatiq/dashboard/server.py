"""Serving the dashboard with uvicorn: in the foreground (the CLI) or in a thread."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp


def serve(app: ASGIApp, *, host: str, port: int) -> None:
    """Serve ``app`` until interrupted (Ctrl-C, SIGTERM)."""
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


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

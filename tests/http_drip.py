"""Hostile HTTP services for the fetch tests: raw sockets, one thread per connection.

:class:`DripServer` answers every request with ``head`` at once, then ``drip`` one byte
at a time every ``interval_s`` (a service that is never done, yet never silent for a
read timeout), or, with ``interval_s=0``, ``drip`` repeated as fast as the socket takes
it (a huge answer, up to ``max_bytes``). Every wait is bounded by ``stop`` and by ``max_s``.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType


class DripServer:
    """A local HTTP server that never finishes its answers (see the module docstring)."""

    def __init__(
        self,
        *,
        head: bytes,
        drip: bytes,
        interval_s: float,
        max_s: float = 30.0,
        max_bytes: int = 1 << 40,
    ) -> None:
        self.head, self.drip, self.interval_s = head, drip, interval_s
        self.max_s, self.max_bytes = max_s, max_bytes
        self.stop = threading.Event()
        self.sent = 0  # bytes written to clients, all connections
        self.connections = 0
        self.closed_by_client = 0  # connections the client closed before the end
        self.closed_at: list[float] = []  # time.perf_counter() when the client closed each
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        host, port = self._listener.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def __enter__(self) -> DripServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        for thread in list(self._threads):
            thread.join(timeout=10)
        self._listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                self._send(conn, self.head)
                self._drip(conn)
            except OSError:  # the client closed the connection: the point of the tests
                with self._lock:
                    self.closed_by_client += 1
                    self.closed_at.append(time.perf_counter())

    def _drip(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + self.max_s
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.interval_s == 0:
                if self.sent >= self.max_bytes:
                    return
                self._send(conn, self.drip)
                continue
            for byte in self.drip:
                if self.stop.wait(self.interval_s):
                    return
                self._send(conn, bytes([byte]))

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

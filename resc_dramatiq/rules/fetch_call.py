"""One bounded HTTP call of a fetcher: a deadline for the whole answer, a cap on its size.

A per-read timeout does not bound a call: a server that sends one byte a second keeps
every read short and the call alive for ever. Here an attempt runs as an asyncio task
under ``asyncio.wait_for``: at ``timeout_s`` it is cancelled wherever it waits (connect,
headers or body), its connection closed, and nothing is left running to fill a pool.
The body is read streamed, decompressed with a bound, and dropped as soon as it passes
``max_body_bytes``: a 300 MiB answer costs the router one cap's worth of memory.

:class:`EventLoopThread` runs the calls of every watcher of a fetcher on one event loop,
in one background thread started on first use.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

import httpx

from ..errors import FetchError

#: Statuses worth another try: the service is overloaded or restarting.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Asked of the service; answers so encoded are decompressed with a bound.
ACCEPT_ENCODING = "gzip, deflate"
_ZLIB_ANY_HEADER = 32 + zlib.MAX_WBITS  # gzip or zlib stream, detected from its header

T = TypeVar("T")
Inflate = Callable[[bytes, int], bytes]


class RetriableFetchError(FetchError):
    """Raised when an attempt failed in a way another attempt may not (time, network, 5xx)."""


async def get_body(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    max_body_bytes: int,
) -> bytes:
    """The body of one ``GET url`` completed within ``timeout_s``, at most ``max_body_bytes``
    long; :class:`RetriableFetchError` or :class:`FetchError` (without the URL) if not."""
    call = _read(client, url, headers=headers, timeout_s=timeout_s, cap=max_body_bytes)
    try:
        return await asyncio.wait_for(call, timeout_s)
    except (TimeoutError, httpx.TimeoutException):
        raise RetriableFetchError(f"no complete answer within {timeout_s:g} s") from None
    except httpx.HTTPError as e:
        raise RetriableFetchError(f"{type(e).__name__}: {e}") from None


async def _read(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    cap: int,
) -> bytes:
    sent = {"Accept-Encoding": ACCEPT_ENCODING, **headers}
    async with client.stream("GET", url, headers=sent, timeout=timeout_s) as response:
        if response.status_code in RETRIED_STATUSES:
            raise RetriableFetchError(f"HTTP {response.status_code}")
        if not response.is_success:
            raise FetchError(f"HTTP {response.status_code}")
        length = response.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > cap:  # said so: not read
            raise FetchError(_over(cap))
        inflate = _inflater(response.headers.get("Content-Encoding", ""))
        body, raw = bytearray(), 0
        async for chunk in response.aiter_raw():
            raw += len(chunk)
            body += inflate(chunk, cap + 1 - len(body))
            if len(body) > cap or raw > cap:
                raise FetchError(_over(cap))  # leaving the block closes the connection
        return bytes(body)


def _inflater(encoding: str) -> Inflate:
    """``inflate(chunk, at_most)``: the decoded bytes of ``chunk``, at most ``at_most``
    (a few KiB of gzip can inflate to GiB: the bound applies while decompressing)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return _as_is
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise FetchError(f"the response is {encoding}-encoded, which is not decoded here")
    decompressor = zlib.decompressobj(_ZLIB_ANY_HEADER)

    def inflate(chunk: bytes, at_most: int) -> bytes:
        try:
            return decompressor.decompress(chunk, max(at_most, 1))
        except zlib.error:
            raise FetchError(f"the response is not valid {encoding}") from None

    return inflate


def _as_is(chunk: bytes, at_most: int) -> bytes:
    return chunk


def _over(cap: int) -> str:
    return f"answer over {size_text(cap)} (max_body_bytes {cap})"


def size_text(size: int) -> str:
    """``1 MiB``, ``64 KiB`` or ``1000 bytes``: a size as a person would write it."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


class EventLoopThread:
    """An asyncio event loop in a daemon thread, started by the first :meth:`submit`."""

    def __init__(self, *, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coroutine`` on the loop; cancelling the future cancels the task."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._running())

    def close(self, last: Coroutine[Any, Any, Any] | None = None) -> None:
        """Cancel what still runs, run ``last`` (a client's ``aclose()``), stop the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            if last is not None:
                asyncio.run(last)  # never started: close on a loop of its own
            return
        asyncio.run_coroutine_threadsafe(_shutdown(last), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


async def _shutdown(last: Coroutine[Any, Any, Any] | None) -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if last is not None:
        await last

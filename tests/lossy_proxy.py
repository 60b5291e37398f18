"""A TCP proxy in front of the test Redis that lets chosen commands run but loses their replies.

"The command ran, the reply never came back" is the fault a retried commit must survive:
the proxy forwards a chosen command (``EVALSHA``, ``EXEC``...), lets Redis run it, then
drops its reply and everything after it, and closes both sides of that connection. The
client sees a ``ConnectionError`` for a command whose writes are in Redis.

To know which reply belongs to which command while clients pipeline, the proxy frames
both directions: commands from the client (RESP arrays of bulk strings, or inline), and
replies from the server (RESP2, and RESP3, which redis-py 8 speaks by default). Replies
pair with commands first in, first out per connection; RESP3 push messages pair with
none, and a connection that subscribes is passed through untouched from then on.

It runs in threads of the test process: one accepting, two pumping per connection.
"""

from __future__ import annotations

import random
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Collection
from contextlib import suppress

RECV_BYTES = 256 * 1024
#: After these, replies no longer pair with commands (pub/sub messages, a monitor feed).
UNPAIRED_AFTER = frozenset({"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR"})


class LossyProxy:
    """Forward to ``upstream``; drop the replies of ``drop`` commands with ``probability``.

    ``probability`` may be changed while it runs; ``max_drops`` caps the drops in all.
    """

    def __init__(
        self,
        *,
        upstream: tuple[str, int],
        drop: Collection[str] = (),
        probability: float = 1.0,
        seed: int = 0,
        max_drops: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.drop = frozenset(name.upper() for name in drop)
        self.probability = probability
        self.max_drops = max_drops
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._links: set[_Link] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None  # made by start()
        self._acceptor: threading.Thread | None = None
        self.port = 0  # known once started

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: give it to the client instead of Redis's own."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def seen(self) -> Counter[str]:
        """Commands forwarded so far, per name (a copy)."""
        with self._lock:
            return self._seen.copy()

    @property
    def dropped(self) -> Counter[str]:
        """Replies dropped so far, per command name (a copy)."""
        with self._lock:
            return self._dropped.copy()

    def __enter__(self) -> LossyProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and accept connections in a thread."""
        listener = self._listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.05)  # how often the accept loop looks at ``_stopping``
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="lossy-accept", daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting, cut every connection, and wait for every thread to end."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.cut()
        for link in links:
            link.join()

    def saw(self, names: list[str]) -> None:
        """Count commands the client sent."""
        with self._lock:
            self._seen.update(names)

    def should_drop(self, name: str) -> bool:
        """Decide (and count) whether the reply to a ``name`` command is lost."""
        if name not in self.drop:
            return False
        with self._lock:
            if self.max_drops is not None and self._dropped.total() >= self.max_drops:
                return False
            if self._random.random() >= self.probability:
                return False
            self._dropped[name] += 1
            return True

    def forget(self, link: _Link) -> None:
        """A connection ended: stop tracking it."""
        with self._lock:
            self._links.discard(link)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = _Link(self, client, server)
            with self._lock:
                self._links.add(link)
            link.start()


class _Link:
    """One client connection and its own connection to the server, pumped both ways."""

    def __init__(self, proxy: LossyProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.server = client, server
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # pipelines stay fast
        self.pending: deque[str] = deque()  # names of commands sent, their replies not yet seen
        self.paired = True  # False once replies can no longer be told apart
        self._lock = threading.Lock()
        self._cut = False
        self._running = 2
        self._threads = [
            threading.Thread(target=self._run, args=(pump,), name=name)
            for pump, name in ((self._commands, "lossy-commands"), (self._replies, "lossy-replies"))
        ]

    def start(self) -> None:
        """Start pumping both ways."""
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def join(self) -> None:
        """Wait for both pumps to end (after :meth:`cut`)."""
        for thread in self._threads:
            thread.join(timeout=5)

    def cut(self) -> None:
        """Shut both sockets down: both pumps wake up and end (idempotent)."""
        with self._lock:
            if self._cut:
                return
            self._cut = True
        for s in (self.client, self.server):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _run(self, pump: Callable[[], None]) -> None:
        """Run a pump; however it ends, the whole link goes (no client half-closes)."""
        try:
            pump()
        except OSError:
            pass  # the other pump, stop(), or a peer cut the link
        finally:
            self.cut()
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self.client.close()
                self.server.close()
                self.proxy.forget(self)

    def _commands(self) -> None:
        """Client to server: note each command's name before Redis can answer it."""
        framer = CommandFramer()
        while data := self.client.recv(RECV_BYTES):
            if self.paired:
                try:
                    names = framer.feed(data)
                except ProtocolError:
                    names, self.paired = [], False
                self.pending.extend(names)
                self.proxy.saw(names)
                if not UNPAIRED_AFTER.isdisjoint(names):
                    self.paired = False
            self.server.sendall(data)

    def _replies(self) -> None:
        """Server to client: forward whole replies; at a lost one, stop and cut."""
        framer = ReplyFramer()
        while data := self.server.recv(RECV_BYTES):
            if not self.paired:
                self.client.sendall(framer.drain() + data)
                continue
            try:
                ends = framer.feed(data)
            except ProtocolError:
                self.paired = False
                self.client.sendall(framer.drain())
                continue
            sent = 0  # end of the last whole reply to forward
            for end, is_reply in ends:
                if is_reply and self.paired:
                    if not self.pending:
                        self.paired = False  # a reply to no command: framing lost
                    elif self.proxy.should_drop(self.pending.popleft()):
                        self.client.sendall(framer.buffer[:sent])
                        return
                sent = end
            self.client.sendall(framer.buffer[:sent])
            framer.consume(sent)


class ProtocolError(Exception):
    """Raised when a stream is not RESP: its connection is passed through unframed."""


def _int(buf: bytearray, start: int, end: int) -> int:
    try:
        return int(buf[start:end])
    except ValueError:
        raise ProtocolError(bytes(buf[start:end])) from None


class CommandFramer:
    """Reads command names out of a client's stream, however it is split into reads."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """Names (upper case) of the commands ``data`` completes, in order."""
        names: list[str] = []
        buf, pos = self.buffer, 0
        buf += data
        while pos < len(buf):
            parsed = self._array(buf, pos) if buf[pos] == ord("*") else self._inline(buf, pos)
            if parsed is None:
                break
            pos, name = parsed
            if name:
                names.append(name)
        del buf[:pos]
        return names

    @staticmethod
    def _array(buf: bytearray, pos: int) -> tuple[int, str] | None:
        """An array of bulk strings: where it ends, its first element (None: incomplete)."""
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        count, name, pos = _int(buf, pos + 1, eol), "", eol + 2
        for i in range(count):
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            if buf[pos] != ord("$"):
                raise ProtocolError(f"a command argument starts with {buf[pos]:#x}")
            end = eol + 2 + _int(buf, pos + 1, eol)
            if len(buf) < end + 2:
                return None
            if i == 0:
                name = buf[eol + 2 : end].decode(errors="replace").upper()
            pos = end + 2
        return pos, name

    @staticmethod
    def _inline(buf: bytearray, pos: int) -> tuple[int, str] | None:
        """A line of words (``PING``, as typed into telnet): where it ends, its first word."""
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return None
        words = buf[pos:eol].split()
        return eol + 1, words[0].decode(errors="replace").upper() if words else ""


_LINE = frozenset(b"+-:_#,(")  # simple string, error, integer; RESP3 null, boolean, numbers
_BULK = frozenset(b"$=!")  # bulk string; RESP3 verbatim string, bulk error
_AGGREGATE = frozenset(b"*~>%|")  # array; RESP3 set, push, map, attribute
_PAIRS = frozenset(b"%|")  # aggregates of key-value pairs
_ATTRIBUTE, _PUSH = ord("|"), ord(">")


class ReplyFramer:
    """Finds where each whole reply ends in a server's stream, however it is split.

    Resumable: an aggregate split across reads is not parsed again from its start.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._pos = 0  # where the next unread value starts
        self._open: list[list[int]] = []  # aggregates being read: [values to come, attribute?]
        self._top = 0  # type byte of the top-level value being read

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        """Ends (offsets in :attr:`buffer`) of the top-level values ``data`` completes,
        each with False for a push message or an attribute (answers to no command)."""
        ends: list[tuple[int, bool]] = []
        buf, pos = self.buffer, self._pos
        buf += data
        while pos < len(buf):
            kind, eol = buf[pos], buf.find(b"\r\n", pos)
            if eol < 0:
                break
            if not self._open:
                self._top = kind
            if kind in _LINE:
                pos = eol + 2
            elif kind in _BULK:
                size = _int(buf, pos + 1, eol)
                end = eol + 2 if size < 0 else eol + size + 4
                if len(buf) < end:
                    break
                pos = end
            elif kind in _AGGREGATE:
                count = _int(buf, pos + 1, eol) * (2 if kind in _PAIRS else 1)
                pos = eol + 2
                if count > 0:
                    self._open.append([count, kind == _ATTRIBUTE])
                    continue
            else:
                raise ProtocolError(f"a reply starts with {kind:#x}")
            self._complete(ends, pos)
        self._pos = pos
        return ends

    def _complete(self, ends: list[tuple[int, bool]], pos: int) -> None:
        """A value ending at ``pos`` is whole: count it in the aggregates it closes."""
        while self._open:
            frame = self._open[-1]
            frame[0] -= 1
            if frame[0]:
                return
            self._open.pop()
            if frame[1]:  # an attribute annotates the value after it, and is none itself
                if not self._open:
                    ends.append((pos, False))
                return
        ends.append((pos, self._top != _PUSH))

    def consume(self, count: int) -> None:
        """Forget the first ``count`` bytes (whole values already forwarded)."""
        del self.buffer[:count]
        self._pos -= count

    def drain(self) -> bytes:
        """Everything buffered, for a connection that is no longer framed."""
        data = bytes(self.buffer)
        self.buffer.clear()
        self._pos = 0
        self._open.clear()
        return data

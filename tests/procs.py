"""Real processes for the router's proofs: router subprocesses, a Redis of one's own.

``RouterProcess`` runs ``resc-dramatiq router`` as a real subprocess, logging to a file;
``kill()`` is a real SIGKILL. ``own_redis()`` starts a Redis with its own port, data
directory and append-only file, for tests that stop and restart the server.
Every wait here is bounded.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_redis.executor import RedisExecutor

from resc_dramatiq.ops.embedded import server_binary

CLI = str(Path(sys.executable).parent / "resc-dramatiq")


def work_until_sigterm(broker: Any, *, threads: int) -> int:
    """The body of a worker process: a real ``dramatiq.Worker`` on ``broker`` until
    SIGTERM ("worker up" on stdout once it runs); the exit code (0)."""
    import dramatiq  # only the worker processes need it

    worker = dramatiq.Worker(broker, worker_threads=threads)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    print("worker up", flush=True)
    while not stop.wait(0.5):  # a timed wait: the signal handler runs between them
        pass
    worker.stop()
    broker.close()
    return 0


def start_server(
    name: str, args: list[str], workdir: Path, *, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """A process of the tests' server binary with ``args``, in a process group of its
    own (killed as one), its output in ``workdir/<name>.log``; (the process, its log)."""
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [server_binary(), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or workdir,
            start_new_session=True,
        )
    return proc, log


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: The reaper's program: remember process groups ("kill <pgid>") and directories
#: ("remove <path>"), one per line; at end of input kill the groups, then remove the
#: directories, unless told to forget them first (the parent cleaned up itself).
_REAPER = """
import os, shutil, signal, sys
groups, paths = [], []
for line in sys.stdin:
    verb, _, arg = line.strip().partition(" ")
    if verb == "forget":
        sys.exit(0)
    (groups if verb == "kill" else paths).append(arg)
for group in groups:
    try:
        os.killpg(int(group), signal.SIGKILL)
    except ProcessLookupError:
        pass
for path in paths:
    shutil.rmtree(path, ignore_errors=True)
"""


class Reaper:
    """A watchdog process that SIGKILLs the process groups it was told of (and removes
    their directories) once this process is gone, however it went (SIGKILL included: its
    end of the pipe closes).

    ``finally`` blocks and fixture finalizers do not run when the test process is killed
    or ``os._exit``s; servers in sessions of their own would then outlive it.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER],
            stdin=subprocess.PIPE,
            start_new_session=True,  # not ended by the Ctrl-C that ends the tests
        )

    def watch(self, group: int) -> None:
        """Kill process group ``group`` when this process ends."""
        self._tell(f"kill {group}")

    def remove(self, directory: Path) -> None:
        """Remove ``directory`` when this process ends (after the kills)."""
        self._tell(f"remove {directory}")

    def _tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        """The groups were ended here: the reaper exits without killing anything."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"forget\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class LoggedProcess:
    """A subprocess whose stdout and stderr go to ``log``."""

    stop_timeout_s = 10.0  # grace period of ``stop`` before SIGKILL

    def __init__(self, args: list[str], *, log: Path, **popen: Any) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **popen)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def signal(self, signum: int) -> int:
        """Send ``signum`` and return the exit code."""
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=20)

    def wait(self, timeout_s: float = 20.0) -> int:
        """Wait for the process to end by itself; return its exit code."""
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """End the process if it still runs (SIGKILL after a grace period)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        """What the process logged so far."""
        return self.log.read_text(errors="replace")


class RouterProcess(LoggedProcess):
    """One ``resc-dramatiq router`` subprocess; its stderr goes to ``log``."""

    def __init__(
        self,
        *,
        config: Path,
        redis_url: str,
        log: Path,
        instance: str | None = None,
        batch: int = 50,
        heartbeat_ttl_s: float = 6.0,
        extra: tuple[str, ...] = (),
    ) -> None:
        args = [CLI, "router", str(config), "--redis-url", redis_url, "--batch", str(batch)]
        args += ["--heartbeat-ttl", str(heartbeat_ttl_s), *extra]
        if instance is not None:
            args += ["--instance", instance]
        super().__init__(args, log=log)


@contextmanager
def routers(**common: Any) -> Iterator[Callable[..., RouterProcess]]:
    """Start routers with ``start(**more)``; every one still running is ended on exit."""
    started: list[RouterProcess] = []

    def start(**more: Any) -> RouterProcess:
        process = RouterProcess(**{**common, **more})
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@contextmanager
def own_redis() -> Iterator[RedisExecutor]:
    """A Redis of this test's own (append-only file on), stopped and cleaned up on exit.

    Stop it with ``stop()`` and start it again with ``start()``: same port, same data.
    """
    datadir = Path(tempfile.mkdtemp(prefix="rr"))  # short: unix socket paths are limited
    executor = RedisExecutor(
        server_binary(),
        databases=1,
        redis_timeout=0,
        loglevel="warning",
        host="127.0.0.1",
        port=free_port(),
        appendonly="yes",
        datadir=datadir,
    )
    executor.start()
    try:
        yield executor
    finally:
        if executor.running():
            executor.stop()
        shutil.rmtree(datadir, ignore_errors=True)


def url_of(executor: RedisExecutor) -> str:
    """``redis://host:port/0`` of an executor."""
    return f"redis://{executor.host}:{executor.port}/0"


#: One rule, two targets: a deduplicated list and one without a dedup set.
DONE = "global/done"
TWO_TARGET_CONFIG = {
    "watchers": [
        {
            "input_queue": DONE,
            "rules": [
                {
                    "on": r"^acq/(?P<n>\d+)$",
                    "make": [
                        {"task": "trt/${n}", "queue": "trt", "set": "todo"},
                        {"task": "log/${n}", "queue": "log"},
                    ],
                }
            ],
        }
    ]
}

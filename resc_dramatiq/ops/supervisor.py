"""Several router processes under one supervisor: what ``router --processes N`` runs.

A router process uses one core (Python's interpreter lock), so a machine with more cores
runs more processes. Each child is a complete router with its own instance name, taken
lists and heartbeat: N children give exactly the guarantees of N routers started by
hand (every event taken by one of them, a dead one's events handed back by the others),
and the supervisor adds only process care:

- a child that dies (a crash, ``kill -9``, an exit 1) is started again under the same
  instance name, so it takes back its own taken list at once instead of waiting for its
  heartbeat to expire; after ``restart_limit`` deaths in a row (a child that ran for
  ``healthy_after_s`` starts counting afresh) the supervisor stops them all, exit 1;
- a child that exits 2 (its config became invalid) stops them all with exit 2: starting
  it again cannot help;
- SIGTERM or SIGINT to the supervisor is passed to every child, which finishes its batch
  and hands back what it holds; a child still running after ``stop_timeout_s`` is killed
  (its events stay in its taken list until another instance reclaims them);
- on Linux a child is told to stop when the supervisor dies, even by ``kill -9``, so a
  restarted supervisor never runs beside orphans of the same names.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: A child's exit code when its config or command line is wrong (the CLI's usage code).
EXIT_USAGE = 2
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child: its name (the router instance) and its command line."""

    name: str
    argv: Sequence[str]


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts the children, keeps them running, stops them together.

    ``run()`` returns the exit code for the whole group; ``stop()`` (from a signal
    handler) asks for an orderly end.
    """

    def __init__(
        self,
        *,
        children: Sequence[ChildSpec],
        restart_limit: int = 5,
        healthy_after_s: float = 30.0,
        stop_timeout_s: float = 30.0,
        poll_s: float = 0.1,
    ) -> None:
        self._children = [_Child(spec) for spec in children]
        self.restart_limit = restart_limit
        self.healthy_after_s = healthy_after_s
        self.stop_timeout_s = stop_timeout_s
        self.poll_s = poll_s
        self._stopping = False

    def stop(self) -> None:
        """End the group: every child gets SIGTERM (safe to call from a signal handler)."""
        self._stopping = True

    @property
    def pids(self) -> dict[str, int]:
        """The live children's process ids, by instance name."""
        return {
            c.spec.name: c.proc.pid
            for c in self._children
            if c.proc is not None and c.proc.poll() is None
        }

    def run(self) -> int:
        """Supervise until stopped or a child cannot be kept alive; the exit code."""
        for child in self._children:
            self._spawn(child)
        code = 0
        while not self._stopping and not code:
            code = self._tend()
            if not code:
                time.sleep(self.poll_s)
        stopped = self._terminate()
        return code or stopped

    def _tend(self) -> int:
        """Restart dead children that are due; non-zero when the group must end."""
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._spawn(child)
                continue
            assert child.proc is not None
            returncode = child.proc.poll()
            if returncode is None:
                continue
            if returncode == EXIT_USAGE:
                logger.error("router process %s exited 2 (bad config); stopping", child.spec.name)
                return EXIT_USAGE
            if now - child.started_at >= self.healthy_after_s:
                child.failures = 0
            child.failures += 1
            how = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
            if child.failures >= self.restart_limit:
                logger.error(
                    "router process %s died %d times in a row (last: %s); stopping",
                    child.spec.name,
                    child.failures,
                    how,
                )
                return 1
            delay_s = min(10.0, 0.5 * 2 ** (child.failures - 1))
            logger.warning(
                "router process %s (pid %d) died (%s); starting it again in %.1f s",
                child.spec.name,
                child.proc.pid,
                how,
                delay_s,
            )
            child.restart_at = now + delay_s
        return 0

    def _spawn(self, child: _Child) -> None:
        child.proc = subprocess.Popen(list(child.spec.argv), preexec_fn=die_with_parent())
        child.started_at = time.monotonic()
        child.restart_at = None

    def _terminate(self) -> int:
        """SIGTERM every live child, wait, kill stragglers; 0 if all ended cleanly.

        A child still starting when the SIGTERM came dies of it before its handler is
        installed: it held nothing yet, so that end is clean too.
        """
        live = [c.proc for c in self._children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        clean = True
        for proc in live:
            try:
                code = proc.wait(max(0.0, deadline - time.monotonic()))
                clean &= code in (0, -signal.SIGTERM)
            except subprocess.TimeoutExpired:
                logger.warning("router process %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
                clean = False
        return 0 if clean else 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this process dies, however
    it dies (``kill -9`` included); ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(1)

    return preexec

"""Summaries of py-spy's raw (collapsed) stack samples: where the router spends its time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

#: Frames that mean "waiting", not working (a thread blocked on a socket or a lock).
IDLE = ("wait (threading.py", "_wait_for_tstate_lock", "read (socket", "recv_into")


@dataclass
class Profile:
    """Sample counts: total, by leaf function (self time), by function anywhere (inclusive)."""

    samples: int
    self_time: Counter[str]
    inclusive: Counter[str]

    def top(self, *, inclusive: bool, n: int = 15) -> list[tuple[str, float]]:
        """The ``n`` heaviest functions with their share of all samples."""
        counts = self.inclusive if inclusive else self.self_time
        return [(name, c / self.samples) for name, c in counts.most_common(n)]


def load(path: Path, *, thread: str | None = None, within: str | None = None) -> Profile:
    """Read ``path`` (``frame;frame;... count`` lines); keep one thread's when named, and
    only the stacks through a frame containing ``within`` when given (``WatcherLoop.run``:
    the watcher's own thread, without the main and heartbeat threads that mostly wait)."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        if thread is not None and thread not in stack.split(";", 1)[0]:
            continue
        if within is not None and within not in stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        self_time[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    return Profile(samples=max(samples, 1), self_time=self_time, inclusive=inclusive)


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py:12)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name

"""Layout 1's router loop, trimmed: heartbeat, take (a blocking ``BLMOVE`` for the first
event, then ``take.lua``), plan, ``commit.lua``, and ``leave.lua`` when stopped.

The planning is the caller's (``plan``): what matters here is what reaches Redis.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import redis

from .commit import Batch, Keys, Task, encode

#: Planning: the events of a batch (oldest first) -> the tasks, each naming its event.
Plan = Callable[[Sequence[bytes]], list[Task]]

COMMITTED, ALREADY_COMMITTED, NOT_OWNED = 1, 2, -1


def script(client: redis.Redis, name: str) -> Any:
    """Frozen script ``name``, registered on ``client`` (called by its SHA)."""
    text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()
    return client.register_script(text)


class FrozenRouter:
    """One watcher of a layout 1 router instance."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        keys: Keys,
        plan: Plan,
        namespace: str = "dramatiq",
        batch_size: int = 50,
        heartbeat_ttl_ms: int = 6000,
    ) -> None:
        self.client, self.keys, self.plan = client, keys, plan
        self.namespace, self.batch_size = namespace, batch_size
        self.heartbeat_ttl_ms = heartbeat_ttl_ms
        self.scripts = {
            n: script(client, n) for n in ("take", "commit", "heartbeat", "reclaim", "leave")
        }
        self.committed = 0  # events committed by this instance

    def heartbeat(self) -> None:
        k = self.keys
        self.scripts["heartbeat"](
            keys=[k.instances, k.beats], args=[k.instance, self.heartbeat_ttl_ms]
        )

    def take(self, block_s: float) -> list[bytes]:
        """Up to ``batch_size`` events, oldest first (waits ``block_s`` for the first)."""
        k = self.keys
        first = self.client.blmove(k.input, k.taken, block_s, "RIGHT", "LEFT")  # type: ignore[arg-type]
        if first is None:
            return []
        more = self.scripts["take"](keys=[k.input, k.taken], args=[self.batch_size - 1])
        return [first, *more]

    def commit(self, events: Sequence[bytes]) -> list[Any]:
        """Plan and commit ``events``; the script's reply."""
        tasks = self.plan(events)
        batch = Batch(events=events, taken_at=time.time(), batch_id=uuid.uuid4().hex, tasks=tasks)
        counters: dict[str, int] = {}
        for t in tasks:
            counters[f"{t.rule}|matched"] = counters.get(f"{t.rule}|matched", 0) + 1
        batch.counters = counters
        keys, args = encode(batch, self.keys, namespace=self.namespace)
        reply: list[Any] = self.scripts["commit"](keys=keys, args=args)
        if reply[0] not in (COMMITTED, ALREADY_COMMITTED):
            raise AssertionError(f"layout 1 commit refused: {reply}")
        self.committed += len(events)
        return reply

    def run(self, stop: threading.Event) -> None:
        """Route until ``stop``; then hand back what is left and leave."""
        k = self.keys
        self.heartbeat()
        self.scripts["reclaim"](
            keys=[k.instances, k.input, k.taken, k.beats], args=[k.instance, "1"]
        )
        while not stop.is_set():
            self.heartbeat()
            events = self.take(0.05)
            if events:
                self.commit(events)
        self.leave()

    def leave(self) -> int:
        k = self.keys
        moved: int = self.scripts["leave"](
            keys=[k.instances, k.input, k.taken, k.beats], args=[k.instance]
        )
        return moved

"""``Recorder``: the middleware of the testing kit that writes down every actor run.

Added before ``Retries`` (so its ``after_*`` hooks see Retries' verdict), it records,
per processed message, the actor, its arguments, the task that made it (a rule-made
message's ``resc`` option) and the outcome: ``done``, ``retried`` (an exception that
Retries will try again) or ``failed`` (failed for good, or skipped).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy

from ..rules.messages import RESC_OPTION

Outcome = Literal["done", "retried", "failed"]


@dataclass(frozen=True, slots=True)
class Run:
    """One processed message."""

    actor: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outcome: Outcome
    message_id: str
    task: str | None  # the task string of a rule-made message, else None
    error: str | None  # ``Type: text`` of the exception, if one was raised


class Recorder(Middleware):
    """Records each message's run; counts the messages being processed right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[Run] = []
        self._busy = 0
        self._current: dict[str, str] = {}  # message id -> ``actor(args)``, being processed

    @property
    def runs(self) -> list[Run]:
        """The runs so far, in the order they ended."""
        with self._lock:
            return list(self._runs)

    @property
    def busy(self) -> int:
        """Messages between ``before_process_message`` and their ``after_*`` hook."""
        with self._lock:
            return self._busy

    @property
    def processing(self) -> list[str]:
        """``actor(args)`` of each message being processed right now."""
        with self._lock:
            return list(self._current.values())

    def clear(self) -> None:
        """Forget the runs recorded so far."""
        with self._lock:
            self._runs.clear()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        args = ", ".join(repr(a) for a in message.args)
        kwargs = ", ".join(f"{k}={v!r}" for k, v in message.kwargs.items())
        shown = f"{message.actor_name}({', '.join(p for p in (args, kwargs) if p)})"
        with self._lock:
            self._busy += 1
            self._current[message.message_id] = shown

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if message.failed:
            outcome: Outcome = "failed"
        else:
            outcome = "done" if exception is None else "retried"
        self._record(message, outcome, exception)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._record(message, "failed", None)

    def _record(self, message: MessageProxy, outcome: Outcome, exc: BaseException | None) -> None:
        spec = message.options.get(RESC_OPTION)
        task = spec.get("task") if isinstance(spec, dict) else None
        run = Run(
            actor=message.actor_name,
            args=tuple(message.args),
            kwargs=dict(message.kwargs),
            outcome=outcome,
            message_id=message.message_id,
            task=task if isinstance(task, str) else None,
            error=None if exc is None else f"{type(exc).__name__}: {exc}",
        )
        with self._lock:
            self._runs.append(run)
            self._busy = max(0, self._busy - 1)  # a skip may come without its before
            self._current.pop(message.message_id, None)

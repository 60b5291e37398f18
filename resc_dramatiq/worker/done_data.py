"""An actor's ``done_data``: the payload its done event carries (see rules/data.py).

``@dramatiq.actor(done_data="result")`` sends the actor's return value (a JSON object)
with its done event; ``done_data=callable`` sends what ``callable(result, message)``
returns instead (``message`` is Dramatiq's message: its ``args``, ``kwargs``...). A
payload that is no JSON object, or whose JSON is over the limit, is a
:class:`~resc_dramatiq.rules.data.NotJSON`: ``Completion`` fails the message with it
(in the worker's log, naming the actor and the message), never drops it silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dramatiq.middleware import MiddlewareError

from ..errors import ConfigError
from ..rules import data


class InvalidDoneData(ConfigError, MiddlewareError):
    """Raised when an actor's ``done_data`` is neither ``"result"`` nor a callable
    (a ``MiddlewareError``: Dramatiq lets it out of ``@dramatiq.actor``)."""


#: What ``done_data`` may be: ``"result"``, or a function of the result and the message.
DoneData = str | Callable[[Any, Any], Any]


def check(value: Any, *, where: str) -> None:
    """Refuse, when the actor is declared, a ``done_data`` that is neither."""
    if value != "result" and not callable(value):
        raise InvalidDoneData(
            f"{where}: done_data is 'result' (the return value) or a callable of "
            f"(result, message), not {value!r}"
        )


def envelope(option: DoneData, event: str, result: Any, message: Any, *, limit: int) -> bytes:
    """The done event ``event`` with its payload, as pushed; raise ``data.NotJSON``."""
    payload = result if option == "result" else option(result, message)  # type: ignore[operator]
    return data.envelope(event, payload, limit=limit)

"""What ``Completion`` writes for one message: its event, the lists, the dedup release.

A rule-made message carries it in its ``resc`` option (the router's task string, done
list, dedup set and release); an actor declaring ``done_event`` has it filled from the
message's arguments. Any other message has none. An actor declaring ``done_event=False``
is a leaf: the successes of its rule-made messages write no done event (their failures
still do, and a ``release: done`` dedup entry is still released).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dramatiq import Actor, Broker
from dramatiq.broker import MessageProxy

from ..errors import RescError
from ..rules.messages import RESC_OPTION
from ..store.commit import DoneMessage
from .done_event import DoneEvent


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the middleware writes for one message: its ``event`` (a rule-made message's
    task string, or the actor's rendered ``done_event``), the lists it goes to, and the
    dedup set it leaves (``release`` says when)."""

    message_id: str
    event: str
    done: str
    failed: str
    set: str | None
    release: str
    emits_done: bool = True  # False: a leaf actor (``done_event=False``)

    def finished(self) -> DoneMessage:
        """The done event: to the done list (or routed inline), released if due."""
        return DoneMessage(self.message_id, self.event, self.done, self.released_when_done)

    def failure(self) -> DoneMessage:
        """The failure event: the same record, to the failure list."""
        return DoneMessage(self.message_id, self.event, self.failed, self.released_when_done)

    @property
    def released_when_done(self) -> str | None:
        """The dedup set released when the message ends (``release: done``), else None."""
        return self.set if self.release == "done" else None


def outcome_of(
    broker: Broker,
    message: MessageProxy,
    templates: Mapping[str, DoneEvent],
    *,
    done_queue: str,
    failed_queue: str | None,
    logger: logging.Logger,
) -> Outcome | None:
    """``message``'s outcome (None: it has no event); ``templates`` are the actors'
    compiled ``done_event``; a template its arguments do not fill is logged as ``LOST``.
    Raises ``KeyError`` for a ``resc`` option without a task."""
    spec = message.options.get(RESC_OPTION)
    actor = broker.actors.get(message.actor_name)
    options = actor.options if actor is not None else {}
    if isinstance(spec, dict):
        event, done, dedup = spec["task"], spec.get("done") or done_queue, spec.get("set")
        release = spec.get("release", "taken")
    elif message.actor_name in templates and actor is not None:
        event = _render(actor, templates[actor.actor_name], message, logger)
        if event is None:
            return None
        done, dedup, release = options.get("done_queue", done_queue), None, "taken"
    else:
        return None
    failed = options.get("failed_queue") or failed_queue or f"{done}/failed"
    emits = options.get("done_event") is not False
    return Outcome(message.message_id, event, done, failed, dedup, release, emits)


def _render(
    actor: Actor[Any, Any], template: DoneEvent, message: MessageProxy, logger: logging.Logger
) -> str | None:
    try:
        return template.render(actor.fn, message.args, message.kwargs)
    except (RescError, TypeError) as e:
        logger.critical(
            "LOST: no done event for message %s: its arguments do not fill %r (%s)",
            message.message_id,
            template.template.source,
            e,
        )
        return None

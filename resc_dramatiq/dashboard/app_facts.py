"""What the pipeline graph knows of a Dramatiq app: its actors and where their events go.

Read once from the app's broker when the dashboard starts (``--app``): each actor's
queue and its ``done_event``, ``done_queue`` and ``failed_queue`` options, and whether
the broker carries ``Completion`` (without it no worker of the app writes done events),
with Completion's own done and failure lists. Where the events of a message go follows
:func:`~resc_dramatiq.worker.outcome.outcome_of`: a rule-made message's done list is its
watcher's input list; a message sent directly is done on the actor's ``done_queue``, else
Completion's, when its actor declares a ``done_event``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq import Broker

from ..worker.completion import Completion


@dataclass(frozen=True, slots=True)
class ActorFacts:
    """One actor of the app."""

    name: str
    queue: str
    done_event: str | None  # the template of its own done events (None: it declares none)
    emits: bool  # False: ``done_event=False``, its messages write no event at all
    done_queue: str | None  # its ``done_queue`` option
    failed_queue: str | None  # its ``failed_queue`` option


@dataclass(frozen=True, slots=True)
class AppFacts:
    """The app's actors, and its Completion middleware's lists (None: it has none)."""

    actors: tuple[ActorFacts, ...]
    done_queue: str | None
    failed_queue: str | None

    def actor(self, name: str) -> ActorFacts | None:
        """The actor named ``name``, or None when the app has none such."""
        return next((a for a in self.actors if a.name == name), None)

    def done_list(self, actor: ActorFacts) -> str | None:
        """Where the done events of ``actor``'s directly sent messages go (None: nowhere)."""
        if self.done_queue is None or not actor.emits or actor.done_event is None:
            return None
        return actor.done_queue or self.done_queue


def app_facts(broker: Broker) -> AppFacts:
    """The facts of the app whose broker is ``broker``."""
    completion = next((m for m in broker.middleware if isinstance(m, Completion)), None)
    actors = []
    for name, actor in sorted(broker.actors.items()):
        options = actor.options
        done_event = options.get("done_event")
        actors.append(
            ActorFacts(
                name=name,
                queue=actor.queue_name,
                done_event=done_event if isinstance(done_event, str) else None,
                emits=done_event is not False,
                done_queue=_text(options.get("done_queue")),
                failed_queue=_text(options.get("failed_queue")),
            )
        )
    return AppFacts(
        actors=tuple(actors),
        done_queue=completion.done_queue if completion is not None else None,
        failed_queue=completion.failed_queue if completion is not None else None,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

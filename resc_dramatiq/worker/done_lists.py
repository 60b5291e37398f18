"""The done and failure lists a worker writes events to, known before it takes a message.

On a Redis Cluster each of them needs a hash tag (``{global/done}``): an event is written
with its message's marker, in the list's markers, by one script, which may touch one
slot only (see :func:`~resc_dramatiq.store.slots.done_list_problems`). That is a matter
of configuration, so it is checked once, where the configuration is read: when a worker
boots (``Completion`` refuses the boot) and in ``resc-dramatiq check``.

The lists: Completion's ``done_queue`` (when an actor declaring ``done_event`` uses it)
and ``failed_queue``; every actor's ``done_queue`` and ``failed_queue`` options; the
done lists of the ``@on_done`` rules and of the rules routed inline (the router's
messages name them as their done list). A failure list made from a done list
(``<done list>/failed``) shares the done list's tag, and is not named again. A done list
that only a message names (the watcher of a router whose rules the worker does not see)
is the router's to check (:func:`~resc_dramatiq.store.slots.cluster_problems`).
"""

from __future__ import annotations

from collections.abc import Iterable

from dramatiq import Broker

from .app import App


def written_lists(
    broker: Broker, *, done_queue: str, failed_queue: str | None, watched: Iterable[str] = ()
) -> dict[str, str]:
    """The lists a worker of ``broker`` writes events to: name -> where it is named.

    ``done_queue`` and ``failed_queue`` are Completion's; ``watched`` the done lists of
    the rules it routes inline.
    """
    lists: dict[str, str] = {}
    if failed_queue:
        lists[failed_queue] = "Completion(failed_queue=...)"
    for name, actor in sorted(broker.actors.items()):
        options = actor.options
        if isinstance(options.get("done_event"), str) and not options.get("done_queue"):
            lists.setdefault(done_queue, f"Completion(done_queue=...), used by actor {name!r}")
        for option in ("done_queue", "failed_queue"):
            value = options.get(option)
            if isinstance(value, str) and value:
                lists.setdefault(value, f"actor {name!r} option {option}")
    for bound in App.of_broker(broker).rules:
        lists.setdefault(bound.rule.watcher, f"{bound.rule.where}: its watcher")
    for name in watched:
        lists.setdefault(name, "a watcher of the rules routed inline")
    return lists

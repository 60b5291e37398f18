"""A finished message's cause, put into its done event (see rules/lineage.py).

The done event of a message carries ``{"message": id, "root": root, "trace": …}`` in
its envelope, so that the tasks it makes name their parent and root. It goes onto the
done list as an envelope only where the list's watcher reads envelopes: the message's
own cause says so (``"envelope": true``, a rule-made message of such a watcher), the
event is an envelope already (``done_data``), or the worker is told every list does
(``Completion(lineage=True)``). Routed in the worker, the cause goes with the event
to the planner (``DoneMessage.cause``), whatever the list reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..rules import data
from ..rules.lineage import carries, done_cause
from ..store.commit import DoneMessage


def with_cause(finished: DoneMessage, options: Mapping[str, Any], *, always: bool) -> DoneMessage:
    """``finished`` with its message's cause: for the planner when it is routed inline,
    and in the element pushed onto its list when that list reads envelopes (see the
    module)."""
    cause = done_cause(finished.message_id, options)
    listed, payload = finished.envelope, finished.payload
    if listed is None and (always or carries(options)):
        listed, payload = data.envelope(finished.event, {}), {}
    if listed is not None:
        listed = data.with_cause(listed, cause)
    return dataclasses.replace(finished, envelope=listed, cause=cause, payload=payload)

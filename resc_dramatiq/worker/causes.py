"""A finished message's cause, put into its done event (see rules/lineage.py).

The done event of a message carries ``{"message": id, "root": root, "trace": …}`` in
its envelope, so that the tasks it makes name their parent and root. It goes onto the
done list as an envelope only where the list's watcher reads envelopes: the message's
own cause says so (``"envelope": true``, a rule-made message of such a watcher), the
event is an envelope already (``done_data``), or the worker is told every list does
(``Completion(lineage=True)``). Routed in the worker, the event always carries it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..rules import data
from ..rules.lineage import carries, done_cause
from ..store.commit import DoneMessage


def with_cause(finished: DoneMessage, options: Mapping[str, Any], *, always: bool) -> DoneMessage:
    """``finished`` with its message's cause: in the envelope routed inline, and in the
    element pushed onto its list when that list reads envelopes (see the module)."""
    cause = done_cause(finished.message_id, options)
    routed = data.with_cause(finished.envelope or data.envelope(finished.event, {}), cause)
    listed = finished.envelope
    if listed is not None or always or carries(options):
        listed = routed
    return dataclasses.replace(finished, envelope=listed, routed=routed)

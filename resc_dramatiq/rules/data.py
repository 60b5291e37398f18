"""Data between stages: the envelope an event's payload travels in (pure).

A plain event is a string. An event with data is an **envelope**, one list element::

    {"resc": 1, "event": "trt/7/42", "data": {"path": "/videos/42.mp4", "size": 1024}}

a JSON object (UTF-8) with ``resc`` 1, the event's text and its payload, a JSON object.
Any worker can push one (``JSON.stringify`` in Node, ``json.Marshal`` in Go); the
``Completion`` middleware writes one for an actor declaring ``done_data``. A watcher
reads envelopes only when its config says ``data: true``: elsewhere an element that
looks like one is a plain event, as it always was.

The payload's top-level scalar fields are the rule variables ``data.<field>`` (strings
as they are, numbers and booleans as JSON writes them); nested values and ``null`` are
no variables, but an actor target's ``data`` option passes them as they are.

An envelope may also carry its message's **cause** (``"cause": {"message": id, "root":
id, "trace": …}``, see :mod:`.lineage`): the message whose done event it is, for the
lineage of the tasks it makes. An invalid cause is ignored, never the event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .lineage import DoneCause
from .model import Rule

#: The envelope's version mark: ``"resc": 1``.
VERSION = 1

#: The largest payload ``Completion`` writes by default (its JSON, bytes).
DEFAULT_LIMIT = 64 * 1024

#: The variables' prefix: ``${data.<field>}``.
PREFIX = "data."


class NotJSON(ValueError):
    """Raised when a payload is not a JSON object, or too big."""


def parse(element: bytes | str) -> tuple[str, dict[str, Any]] | None:
    """The event and payload of an envelope; None when ``element`` is no envelope (a
    plain event; also JSON nested too deeply to parse, which no rule then matches)."""
    found = parse_caused(element)
    return None if found is None else found[:2]


def parse_caused(element: bytes | str) -> tuple[str, dict[str, Any], DoneCause | None] | None:
    """The event, payload and cause (None: none, or invalid) of an envelope; None when
    ``element`` is no envelope (see :func:`parse`)."""
    if not element or (element[0] != 123 and element[0] != "{"):  # b"{"[0] == 123
        return None
    try:
        found = json.loads(element)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return None
    if (
        not isinstance(found, dict)
        or found.get("resc") != VERSION
        or not isinstance(found.get("event"), str)
        or not isinstance(found.get("data"), dict)
    ):
        return None
    return found["event"], found["data"], DoneCause.read(found.get("cause"))


def envelope(event: str, data: Mapping[str, Any], *, limit: int = DEFAULT_LIMIT) -> bytes:
    """``event`` with its payload ``data``, as one list element; raise :class:`NotJSON`
    when ``data`` is no JSON object or its JSON is over ``limit`` bytes."""
    if not isinstance(data, Mapping):
        raise NotJSON(f"a payload is a JSON object (a dict), not {type(data).__name__}")
    try:
        payload = json.dumps(dict(data), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise NotJSON(f"the payload is not JSON: {e}") from None
    size = len(payload.encode())
    if size > limit:
        raise NotJSON(f"the payload is {size} bytes of JSON, over the limit of {limit}")
    head = json.dumps({"resc": VERSION, "event": event}, separators=(",", ":"))
    return f'{head[:-1]},"data":{payload}}}'.encode()


def with_cause(element: bytes, cause: DoneCause) -> bytes:
    """The envelope ``element`` (one :func:`envelope` wrote) with its message's cause."""
    field = json.dumps(cause.as_dict(), separators=(",", ":")).encode()
    return element[:-1] + b',"cause":' + field + b"}"


def variables(data: Mapping[str, Any]) -> dict[str, str]:
    """The ``data.<field>`` variables of a payload: its top-level scalar fields."""
    found = {}
    for key, value in data.items():
        if isinstance(value, str):
            found[PREFIX + key] = value
        elif isinstance(value, bool | int | float):
            found[PREFIX + key] = json.dumps(value)
    return found


def hidden_fields(rule: Rule) -> list[str]:
    """Where a rule's own arguments hide payload fields its makes pass by name (the
    rule's win): one line per make and field, for ``check``."""
    found = []
    groups = set(rule.pattern.groupindex)
    for i, make in enumerate(rule.makes):
        target = make.target
        if not isinstance(target.data, tuple):
            continue
        own = set(target.kwargs or ()) if target.kwargs is not None else groups
        for field in target.data:
            if field in own:
                found.append(
                    f"rule {rule.name!r} make[{i}]: the payload field {field!r} is hidden by "
                    f"the rule's own argument {field!r} (the rule's wins)"
                )
    return found

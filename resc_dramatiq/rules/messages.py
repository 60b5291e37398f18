"""Dramatiq messages built exactly as Dramatiq's Redis broker writes them.

The payload has ``queue_name, actor_name, args, kwargs, options, message_id,
message_timestamp``; ``options.redis_message_id`` is a fresh id distinct from
``message_id``. Delayed messages go to ``<queue>.DQ`` with ``options.eta`` in epoch ms.
Payloads are encoded with Dramatiq's global encoder, so custom encoders keep working;
with its default JSON encoder, what each make's messages share is encoded once and
the rest spliced in (:class:`_Layout`), byte for byte the same text.
The ``resc`` option tells the completion middleware which task this message is,
which dedup set holds it and where its done event goes; ``resc_cause`` why it exists
(see :mod:`.lineage`).

Over ~250 lines on purpose: the dict-built message and its spliced twin must be read
side by side (the splice is checked against the dict, byte for byte).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import dramatiq

from .ids import new_id
from .joins import MEMBERS_VARIABLE
from .lineage import CAUSE_OPTION, Cause
from .model import Make, Task
from .templates import Template

#: Message option read by :class:`resc_dramatiq.worker.completion.Completion`.
RESC_OPTION = "resc"


def delay_queue_name(queue: str) -> str:
    """Dramatiq's name for the delay queue of ``queue``."""
    return f"{queue}.DQ"


def _json_encoder() -> Callable[[Any], str]:
    """Dramatiq's default encoding (``json.dumps`` with compact separators), built once.

    ``JSONEncoder.encode`` builds its C encoder anew for every call; this builds it once
    (a third of the time per message). Falls back to ``encode`` where the C
    accelerator is missing or writes other text than ``json.dumps``.
    """
    encoder = json.JSONEncoder(separators=(",", ":"))
    if c_make_encoder is None:
        return encoder.encode
    iterencode = c_make_encoder(
        None, encoder.default, encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(value: Any) -> str:
        return "".join(iterencode(value, 0))

    sample = {"a": [1, 2.5, 1e300, None, True, 'é\n"${x}'], "b": {"c": -0.0}}
    return encode if encode(sample) == encoder.encode(sample) else encoder.encode


_encode_json = _json_encoder()


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as the broker's encoder writes it (byte for byte for the default one)."""
    encoder = dramatiq.get_encoder()
    if type(encoder) is dramatiq.JSONEncoder:
        return _encode_json(message).encode("utf-8")
    return encoder.encode(message)


@dataclass(slots=True)  # not frozen: made per message, and a frozen init costs
class Envelope:
    """A message ready to push: the Redis queue name, its Redis id, its payload and its
    Dramatiq message id."""

    queue_name: str
    redis_message_id: str
    payload: bytes
    message_id: str = ""


def read_message_record(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """The lineage record (as :func:`.lineage.record` writes it) of a Dramatiq message
    kept as its own record; None when ``message`` is no rule-made message."""
    options = message.get("options")
    if not isinstance(options, Mapping) or "message_id" not in message:
        return None
    resc, cause = options.get(RESC_OPTION), options.get(CAUSE_OPTION)
    if not isinstance(resc, Mapping):
        return None
    queue = message.get("queue_name")
    found: dict[str, Any] = {
        "task": resc.get("task"),
        "queue": queue.removesuffix(delay_queue_name("")) if isinstance(queue, str) else None,
        "at": message.get("message_timestamp"),
        "message": message.get("message_id"),
        "redis": options.get("redis_message_id"),
        "actor": message.get("actor_name"),
    }
    if isinstance(cause, Mapping):
        found["cause"] = {k: v for k, v in cause.items() if k != "envelope"}
    return found


def build_message(
    task: Task, *, now_ms: int, done_queue: str | None, cause: Cause | None = None
) -> Envelope:
    """The Dramatiq message of an actor task, encoded, with its ``cause`` (the
    ``resc_cause`` option) when given."""
    target = task.make.target
    assert target.actor is not None
    redis_message_id, message_id = new_id(), new_id()
    queue_name = task.queue if target.delay_ms is None else delay_queue_name(task.queue)
    if type(dramatiq.get_encoder()) is dramatiq.JSONEncoder and type(now_ms) is int:
        layout = _layout(task, now_ms, done_queue)
        if layout.usable:
            payload = layout.payload(
                task, queue_name, redis_message_id, message_id, now_ms, done_queue, cause
            )
            return Envelope(queue_name, redis_message_id, payload, message_id)
    message = _message(task, queue_name, redis_message_id, message_id, now_ms, done_queue, cause)
    return Envelope(queue_name, redis_message_id, encode(message), message_id)


def _message(
    task: Task,
    queue_name: str,
    redis_message_id: str,
    message_id: str,
    now_ms: int,
    done_queue: str | None,
    cause: Cause | None = None,
) -> dict[str, Any]:
    """The message as a dict, in the key order Dramatiq's ``Message.asdict`` gives."""
    target = task.make.target
    options: dict[str, Any] = dict(target.options)
    options["redis_message_id"] = redis_message_id
    options[RESC_OPTION] = {
        "task": task.task,
        "set": task.set,
        "release": target.release,
        "done": done_queue,
    }
    if cause is not None:
        options[CAUSE_OPTION] = cause.as_dict(message_id)
    if target.delay_ms is not None:
        options["eta"] = now_ms + target.delay_ms
    return {
        "queue_name": queue_name,
        "actor_name": target.actor,
        "args": actor_args(task),
        "kwargs": actor_kwargs(task),
        "options": options,
        "message_id": message_id,
        "message_timestamp": now_ms,
    }


@dataclass(frozen=True, slots=True)
class _Layout:
    """What the JSON of one make's messages has in common, encoded once.

    ``json.dumps`` (compact, ASCII) writes a dict as ``{``, its ``"key":value`` items
    joined by ``,``, then ``}``, and a value's text does not depend on where it sits. So
    the constant parts encoded once, spliced with the values of each message encoded by
    the same functions (strings by ``encode_basestring_ascii``, ints by ``repr``, other
    values by the encoder itself; the ids are hex and dashes), give exactly the text of
    :func:`_message` encoded, at a third of the cost. The first message of each make is
    built both ways and compared; ``usable`` is False if they differ, or if an option
    would take the place of one the router sets (the config refuses those).
    """

    make: Make
    usable: bool
    actor: str
    options: str  # the make's own options, each followed by ","
    release: str
    keys: dict[str, str]  # '"name":' of each variable met, for the default kwargs

    @classmethod
    def of(cls, task: Task, now_ms: int, done_queue: str | None) -> _Layout:
        """The layout of ``task``'s make, checked on ``task``'s message."""
        target = task.make.target
        assert target.actor is not None
        options = dict(target.options)
        layout = cls(
            make=task.make,
            usable=not options.keys() & {"redis_message_id", RESC_OPTION, CAUSE_OPTION, "eta"},
            actor=encode_basestring_ascii(target.actor),
            options=_encode_json(options)[1:-1] + "," if options else "",
            release=encode_basestring_ascii(target.release),
            keys={},
        )
        if layout.usable:
            ids = new_id(), new_id()
            cause = Cause(None, 'x"\u00e9', "r", "w", envelope=True, members=("m",))
            for c in (None, cause):
                spliced = layout.payload(task, task.queue, *ids, now_ms, done_queue, c)
                expected = _message(task, task.queue, *ids, now_ms, done_queue, c)
                if spliced != _encode_json(expected).encode("utf-8"):
                    return replace(layout, usable=False)
        return layout

    def payload(
        self,
        task: Task,
        queue_name: str,
        redis_message_id: str,
        message_id: str,
        now_ms: int,
        done_queue: str | None,
        cause: Cause | None = None,
    ) -> bytes:
        """The encoded message of ``task`` (see the class)."""
        target = self.make.target
        args = "[]" if target.args is None else _encode_json(actor_args(task))
        if target.kwargs is not None or target.data is not None or target.members is not None:
            kwargs = _encode_json(actor_kwargs(task))
        elif target.args is not None:
            kwargs = "{}"
        else:
            kwargs = self.named_groups(task.variables)
        esc = encode_basestring_ascii
        dedup_set = "null" if task.set is None else esc(task.set)
        done = "null" if done_queue is None else esc(done_queue)
        eta = "" if target.delay_ms is None else f',"eta":{now_ms + target.delay_ms!r}'
        if cause is not None:
            eta = f',"{CAUSE_OPTION}":{cause.encoded(message_id)}{eta}'
        return (
            f'{{"queue_name":{esc(queue_name)},"actor_name":{self.actor},"args":{args},'
            f'"kwargs":{kwargs},"options":{{{self.options}"redis_message_id":"{redis_message_id}",'
            f'"{RESC_OPTION}":{{"task":{esc(task.task)},"set":{dedup_set},'
            f'"release":{self.release},"done":{done}}}{eta}}},'
            f'"message_id":"{message_id}","message_timestamp":{now_ms!r}}}'
        ).encode()

    def named_groups(self, variables: Mapping[str, str]) -> str:
        """The default kwargs (see :func:`actor_kwargs`), encoded."""
        keys, esc = self.keys, encode_basestring_ascii
        try:
            items = [
                keys[k] + esc(v) for k, v in variables.items() if k != "input_task" and "." not in k
            ]
        except KeyError:  # a variable met for the first time
            keys.update((k, esc(k) + ":") for k in variables if k not in keys)
            return self.named_groups(variables)
        return "{" + ",".join(items) + "}"


#: Each make's layout, by ``id(make)``; a layout holds its make, so the id stays its own.
_layouts: dict[int, _Layout] = {}


def _layout(task: Task, now_ms: int, done_queue: str | None) -> _Layout:
    make = task.make
    layout = _layouts.get(id(make))
    if layout is None or layout.make is not make:
        if len(_layouts) >= 1024:  # rule sets compiled again and again (tests): start afresh
            _layouts.clear()
        layout = _layouts[id(make)] = _Layout.of(task, now_ms, done_queue)
    return layout


def render_value(value: Any, variables: Mapping[str, str]) -> Any:
    """Fill a compiled args/kwargs value, at any depth; other JSON values pass through."""
    if isinstance(value, Template):
        return value.render(variables)
    if isinstance(value, tuple):
        return [render_value(v, variables) for v in value]
    if isinstance(value, Mapping):
        return {k: render_value(v, variables) for k, v in value.items()}
    return value


def actor_kwargs(task: Task) -> dict[str, Any]:
    """The kwargs of an actor target: its templates, else the rule's named groups; with
    its ``data`` option, the payload's fields it names (or the whole payload as one
    argument), which the rule's own arguments win over."""
    target = task.make.target
    if target.kwargs is not None:
        kwargs = {k: render_value(v, task.variables) for k, v in target.kwargs.items()}
    elif target.args is not None:
        kwargs = {}
    else:
        kwargs = {k: v for k, v in task.variables.items() if k != "input_task" and "." not in k}
    if target.members is not None:  # filled by the commit that completes the join
        kwargs = {target.members: task.variables.get(MEMBERS_VARIABLE)} | kwargs
    if target.data is None:
        return kwargs
    payload = task.data or {}
    if isinstance(target.data, str):
        return {target.data: dict(payload)} | kwargs
    return {f: payload[f] for f in target.data if f in payload} | kwargs


def actor_args(task: Task) -> list[Any]:
    """The positional args of an actor target (empty unless ``args`` is given)."""
    return [render_value(v, task.variables) for v in task.make.target.args or ()]

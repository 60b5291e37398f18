"""Redis Cluster hash slots of keys and of key templates, and the layouts a cluster can serve.

Pure: no Redis. A Lua script may only touch keys of one hash slot. A key's slot is the
CRC16 of its hash tag (the text between its first ``{`` and the first ``}`` after it,
when not empty) or of the whole key. A key *template* (``trt/${id}/todo``) names keys in
one fixed slot when its tag is literal (``{trt}/${id}/todo``), keys whose slot follows a
prefix of the template when its tag holds a variable (``{p${id}}/todo``: two templates
starting with the same ``{p${id}}`` always share a slot), or keys in any slot.

:func:`cluster_problems` says which watchers and make entries of a rule set a cluster
cannot serve yet, naming the keys, their slots and a hash tag that would fix them.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.crc import key_slot as _crc_slot

from ..rules.model import Make
from ..rules.ruleset import RuleSet
from ..rules.templates import Template
from .keys import DramatiqKeys, WatcherKeys

#: Two instance names: a watcher's per-instance keys must fall in its slot for both.
_INSTANCES = ("a", "b")


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key`` (0..16383)."""
    return int(_crc_slot(key.encode() if isinstance(key, str) else key))


@dataclass(frozen=True, slots=True)
class SlotOf:
    """Where the keys of a template fall.

    ``fixed``: one slot for every key; else ``prefix``: the template's parts up to its
    tag's closing brace (keys of templates with the same prefix share a slot); neither:
    any slot, decided by the event.
    """

    fixed: int | None = None
    prefix: tuple[str, ...] | None = None

    def always_with(self, other: SlotOf) -> bool:
        """True when every key of this template shares the slot of the other's key."""
        if self.fixed is not None:
            return self.fixed == other.fixed
        return self.prefix is not None and self.prefix == other.prefix

    def describe(self) -> str:
        """Where the keys fall, as a person reads it."""
        if self.fixed is not None:
            return f"slot {self.fixed}"
        if self.prefix is not None:
            return f"the slot of its tag {''.join(self.prefix)!r}"
        return "a slot that depends on the event"


def slot_of(template: Template) -> SlotOf:
    """Where the keys ``template`` names fall (see :class:`SlotOf`)."""
    if template.is_constant:
        return SlotOf(fixed=key_slot(template.source))
    parts: list[str] = []  # literals, and variables written as ${name}
    opened = False
    for i, literal in enumerate(template.literals):
        if not opened and "{" in literal:
            opened, literal_rest = True, literal[literal.index("{") + 1 :]
            head = literal[: literal.index("{") + 1]
        else:
            head, literal_rest = "", literal
        if opened and "}" in literal_rest:
            parts.append(head + literal_rest[: literal_rest.index("}") + 1])
            prefix = tuple(parts)
            if all(not p.startswith("${") for p in prefix):  # the tag is literal
                return SlotOf(fixed=key_slot("".join(prefix)))
            return SlotOf(prefix=prefix)
        parts.append(literal)
        if i < len(template.names):
            parts.append(f"${{{template.names[i]}}}")
    return SlotOf()


def suggested(name: str) -> str:
    """``name`` with a hash tag that pins it (and names made by extending it) to one slot."""
    return name if "{" in name else f"{{{name}}}"


def watcher_slots(keys: WatcherKeys, other: WatcherKeys) -> dict[str, int]:
    """Every key of a watcher, for two router instances, by name -> slot."""
    names = [
        keys.input,
        keys.taken,
        other.taken,
        keys.committed,
        other.committed,
        keys.taken_base,
        keys.instances,
        keys.beats,
        keys.stats,
        keys.history_at(0),
        keys.attempts,
        keys.dead,
    ]
    if keys.unmatched:
        names.append(keys.unmatched)
    return {name: key_slot(name) for name in names}


def make_problems(make: Make, dramatiq: DramatiqKeys, where: str) -> list[str]:
    """Why a make entry's task keys (dedup set, target) cannot be written in one script."""
    target = make.target
    if target.actor is None:
        queue_slot = slot_of(target.queue)
        queue_name = f"list {target.queue.source!r}"
    else:
        queue_slot = SlotOf(fixed=key_slot(dramatiq.queue("q")))
        queue_name = f"Dramatiq's keys in namespace {dramatiq.namespace!r}"
        if key_slot(dramatiq.queue("q")) != key_slot(dramatiq.messages("q")):
            return [
                f"{where}: {queue_name} fall in different slots (Dramatiq builds its key "
                f"names from the namespace); use a namespace with a hash tag, e.g. "
                f"{suggested(dramatiq.namespace)!r} (RedisBroker(namespace=...) and the "
                f"config's 'namespace')"
            ]
    if queue_slot.fixed is None and queue_slot.prefix is None:
        return [
            f"{where}: the keys of {queue_name} fall in a slot that depends on the event; "
            f"give it a hash tag, e.g. {suggested(target.queue.source)!r}"
        ]
    if make.set is None or slot_of(make.set).always_with(queue_slot):
        return []
    return [
        f"{where}: dedup set {make.set.source!r} ({slot_of(make.set).describe()}) and "
        f"{queue_name} ({queue_slot.describe()}) may fall in different slots; give both "
        f"the same hash tag"
    ]


def cluster_problems(ruleset: RuleSet, namespace: str) -> list[str]:
    """What a Redis Cluster cannot serve in ``ruleset`` (empty: it can serve all of it).

    Each watcher's own keys must share one slot, and so must each task's dedup set and
    target. Until batches spanning several slots are committed in steps, a watcher's
    tasks must also fall in the watcher's slot. Schedules are not fired on a cluster yet.
    """
    problems: list[str] = []
    dramatiq = DramatiqKeys(namespace)
    for watcher in ruleset.watchers:
        spec = watcher.spec
        one, other = (WatcherKeys.of(spec, instance) for instance in _INSTANCES)
        slots = watcher_slots(one, other)
        home = key_slot(spec.input_queue)
        strays = [name for name, slot in slots.items() if slot != home]
        if strays:
            problems.append(
                f"watcher {spec.input_queue!r}: its keys fall in {len(set(slots.values()))} "
                f"slots ({', '.join(repr(s) for s in strays[:3])} not in the input list's "
                f"slot {home}); on a cluster a watcher's keys share one slot: name its input "
                f"{suggested(spec.input_queue)!r} (its taken and dead lists follow)"
            )
            continue
        for rule in watcher.rules:
            for i, make in enumerate(rule.makes):
                where = f"rule {rule.name!r} make[{i}]"
                found = make_problems(make, dramatiq, where)
                problems += found
                if found:
                    continue
                task_slot = slot_of(make.set) if make.set is not None else None
                if make.target.actor is None:
                    task_slot = slot_of(make.target.queue)
                elif task_slot is None:
                    task_slot = SlotOf(fixed=key_slot(dramatiq.queue("q")))
                if task_slot.fixed != home:
                    problems.append(
                        f"{where}: its keys fall in {task_slot.describe()}, not in watcher "
                        f"{spec.input_queue!r}'s slot {home}; batches spanning several "
                        f"slots are not committed yet: give its keys the watcher's tag"
                    )
    if ruleset.config.spec.schedules:
        problems.append("schedules: not fired on a Redis Cluster yet")
    return problems

"""Redis Cluster hash slots of keys and of key templates, and the layouts a cluster can serve.

Pure: no Redis. A Lua script may only touch keys of one hash slot. A key's slot is the
CRC16 of its hash tag (the text between its first ``{`` and the first ``}`` after it,
when not empty) or of the whole key. A key *template* (``trt/${id}/todo``) names keys in
one fixed slot when its tag is literal (``{trt}/${id}/todo``), keys whose slot follows a
prefix of the template when its tag holds a variable (``{p${id}}/todo``: two templates
starting with the same ``{p${id}}`` always share a slot), or keys in any slot.

:func:`cluster_problems` says which watchers and make entries of a rule set a cluster
cannot serve yet, naming the keys, their slots and a hash tag that would fix them;
:func:`done_list_problems` which done and failure lists a worker cannot write to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..compat import key_slot as key_slot  # one slot function for the package
from ..rules.model import Make
from ..rules.ruleset import RuleSet
from ..rules.schedules import compile_schedules
from ..rules.templates import Template
from .keys import DramatiqKeys, WatcherKeys, message_markers, schedule_state

#: Two instance names: a watcher's per-instance keys must fall in its slot for both.
_INSTANCES = ("a", "b")


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
    """Where the keys ``template`` names fall (see :class:`SlotOf`).

    Only a tag that the event cannot move counts: its ``{`` literal with no variable
    before it (a value holding ``{`` would open another tag), followed by a literal
    character (a value starting with ``}`` would leave the tag empty, and Redis then
    hashes the whole key).
    """
    if template.is_constant:
        return SlotOf(fixed=key_slot(template.source))
    first = template.literals[0]
    start = first.find("{")
    if start < 0 or start + 1 >= len(first) or first[start + 1] == "}":
        return SlotOf()
    end = first.find("}", start + 1)
    if end >= 0:  # the tag is literal
        return SlotOf(fixed=key_slot(first[: end + 1]))
    parts = [first]
    for name, literal in zip(template.names, template.literals[1:], strict=True):
        parts.append(f"${{{name}}}")
        if "}" in literal:
            parts.append(literal[: literal.index("}") + 1])
            return SlotOf(prefix=tuple(parts))
        parts.append(literal)
    return SlotOf()


def _tag_example(make: Make) -> str:
    """A tag for a make's keys: its task's first variable, after a letter."""
    names = make.task.names or (make.set.names if make.set is not None else ())
    return f"t${{{names[0]}}}" if names else "t"


def suggested(name: str) -> str:
    """``name`` with a hash tag that pins it (and names made by extending it) to one slot."""
    return name if "{" in name else f"{{{name}}}"


def watcher_slots(keys: WatcherKeys, other: WatcherKeys) -> dict[str, int]:
    """Every key of a watcher, for two router instances, by name -> slot."""
    names = [
        keys.input,
        keys.outbox,
        keys.outbox_at,
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
    if make.set is None or slot_of(make.set).always_with(queue_slot):
        return []
    return [
        f"{where}: dedup set {make.set.source!r} ({slot_of(make.set).describe()}) and "
        f"{queue_name} ({queue_slot.describe()}) may fall in different slots; give both "
        f"the same hash tag that starts with a literal character, e.g. "
        f"{{{_tag_example(make)}}}"
    ]


def make_slot(make: Make, dramatiq: DramatiqKeys, home: int) -> str:
    """Where a make entry's keys fall on a cluster, and how they are written, as text."""
    target = make.target
    where = (
        SlotOf(fixed=key_slot(dramatiq.queue("q")))
        if target.actor is not None
        else slot_of(target.queue)
    )
    if where.fixed == home:
        return f"slot {home}, the watcher's: with the commit"
    if where.fixed is None and where.prefix is None:
        return "a slot per task: through the outbox"
    return f"{where.describe()}: through the outbox"


def _join_problems(
    rule: str,
    makes: tuple[Make, ...],
    expired: tuple[Make, ...],
    dramatiq: DramatiqKeys,
    home: int,
) -> list[str]:
    """A join's makes are queued by the step that completes (or fails, or expires) its
    group, in the watcher's slot: their keys must be there too."""
    problems = []
    for name, entries in (("make", makes), ("join.expired", expired)):
        for i, make in enumerate(entries):
            where = make_slot(make, dramatiq, home)
            if not where.startswith(f"slot {home},"):
                problems.append(
                    f"rule {rule!r} {name}[{i}]: a join's tasks are queued in the step that "
                    f"closes its group, in the watcher's slot {home}; its keys fall in "
                    f"{where.split(':')[0]}: give its target the watcher's hash tag"
                )
    return problems


def cluster_problems(ruleset: RuleSet, namespace: str) -> list[str]:
    """What a Redis Cluster cannot serve in ``ruleset`` (empty: it can serve all of it).

    Each watcher's own keys must share one slot, and so must each task's dedup set and
    target (a batch's tasks may fall in any slots: see :mod:`.outbox`), and each
    schedule's state its target's (its target needs a hash tag). A join's makes queue
    into the watcher's slot (they are written with the group's state).
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
                f"{suggested(spec.input_queue)!r} (its taken and dead lists follow; for rules in "
                f"code: @on_done(..., watcher=...) and Completion(done_queue=...))"
            )
            continue
        for rule in watcher.rules:
            for i, make in enumerate(rule.makes):
                where = f"rule {rule.name!r} make[{i}]"
                problems += make_problems(make, dramatiq, where)
            if rule.join is not None:
                problems += _join_problems(rule.name, rule.makes, rule.join.expired, dramatiq, home)
    for schedule in compile_schedules(ruleset.config):
        target = schedule.queue if schedule.actor is None else dramatiq.queue(schedule.queue)
        if key_slot(schedule_state(schedule.name, target)) != key_slot(target):
            problems.append(
                f"schedule {schedule.name!r}: its target {target!r} has no hash tag; on a "
                f"cluster a schedule's state is kept in its target's slot: name it "
                f"{suggested(schedule.queue)!r}"
                + (" (or use a namespace with a hash tag)" if schedule.actor else "")
            )
    return problems


def done_list_problems(lists: Mapping[str, str]) -> list[str]:
    """Which of ``lists`` (name -> where it is named) a worker cannot write events to on a
    Redis Cluster (empty: it can write to all of them).

    An event is written with its message's marker, in the list's markers
    (:func:`~resc_dramatiq.store.keys.message_markers`), by one script: both keys must
    share a slot, which a hash tag makes sure of (``{global/done}``; its failure list
    ``{global/done}/failed`` and its markers follow).
    """
    return [
        f"{where}: list {name!r} and its markers {message_markers(name)!r} fall in different "
        f"slots; on a cluster a done or failure list needs a hash tag: name it "
        f"{'{' + name + '}'!r}"
        for name, where in lists.items()
        if key_slot(message_markers(name)) != key_slot(name)
    ]

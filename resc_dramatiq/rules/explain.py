"""``explain``: what the rules make of an event, and when schedules fire, without Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import RuleError
from . import data as payload
from .joins import join_variables, membership
from .messages import actor_args, actor_kwargs
from .model import Match, Task
from .patterns import decode_event
from .plan import Planner
from .ruleset import RuleSet
from .schedule_ticks import next_ticks
from .schedules import Schedule


def explain_event(
    ruleset: RuleSet, event: str, data: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """For each watcher whose rules match ``event``: the rules, variables and tasks.

    The tasks are what the router's planner makes of the event (rules with fetchers
    are shown with their calls: their tasks depend on the answers). ``data``: the
    event's payload, as the watchers reading envelopes (``data: true``) see it.
    """
    text = decode_event(event)
    report = []
    for watcher in ruleset.watchers:
        planner = Planner(watcher)
        for m in watcher.matches(text):
            if data is not None and watcher.spec.data:
                m.variables, m.data = payload.variables(data) | m.variables, dict(data)
            entry: dict[str, Any] = {
                "watcher": watcher.spec.input_queue,
                "rule": m.rule.name,
                "variables": m.variables,
            }
            entry.update(_outcome(planner, m))
            report.append(entry)
    return report


def _outcome(planner: Planner, m: Match) -> dict[str, Any]:
    """The tasks of a match, or why there are none (fetchers, a run-time error)."""
    if m.rule.fetch:
        return {
            "fetch": [f.url for f in m.rule.fetch],
            "tasks": [],
            "note": "tasks depend on the fetchers' answers",
        }
    try:
        if m.rule.join is not None:
            return _join_outcome(m)
        return {"tasks": [describe_task(t) for t in planner.expand(m)]}
    except RuleError as e:  # what the router would dead-letter the event for
        return {"tasks": [], "error": str(e)}


def _join_outcome(m: Match) -> dict[str, Any]:
    """A join rule's match: the group, member and expectation the event would join, the
    tasks its make fires when the group completes (``expired``: at the deadline, made
    from the group's first member, shown as if this event were it); for a rule that
    fails groups, the group it fails and the tasks fired if that group is open."""
    join, rule, variables = m.rule.join, m.rule, m.variables
    assert join is not None
    if join.fail:
        group = join.group.render(variables)
        made = join_variables(variables, group, 0)
        tasks = [describe_task(t) for t in rule.make(m.index, made)]
        return {"join": {"group": group, "fail": True}, "tasks": tasks}
    found = membership(join, variables)
    made = join_variables(variables, found.group, found.expect)
    described: dict[str, Any] = {
        "group": found.group,
        "member": found.member,
        "expect": found.expect or None,  # None: the members a fan-out recorded
        "members": list(found.members),
        "fan_out": join.expect is None,
        "deadline_s": join.deadline_ms / 1000 if join.deadline_ms else None,
    }
    return {
        "join": described,
        "tasks": [describe_task(t) for t in rule.make(m.index, made)],
        "expired": [describe_task(t) for t in rule.make(m.index, made, join.expired)],
    }


def describe_task(task: Task) -> dict[str, Any]:
    """A task as plain data: the task string, its target and its dedup set."""
    target = task.make.target
    out: dict[str, Any] = {"task": task.task, "set": task.set}
    if task.make.group is not None:  # a fan-out: its tasks are the group's members
        out["group"] = task.make.group.render(task.variables)
    if target.actor is None:
        out["target"] = {"kind": "list", "queue": task.queue}
    else:
        out["target"] = {
            "kind": "actor",
            "actor": target.actor,
            "queue": task.queue,
            "args": actor_args(task),
            "kwargs": actor_kwargs(task),
            "delay_ms": target.delay_ms,
            "release": target.release,
        }
    return out


def format_report(event: str, report: list[dict[str, Any]]) -> str:
    """Human-readable form of :func:`explain_event`."""
    lines = [f"event {event!r}"]
    if not report:
        lines.append("  matches no rule")
    for entry in report:
        lines.append(f"  rule {entry['rule']!r} (watcher {entry['watcher']!r})")
        for name, value in entry["variables"].items():
            lines.append(f"    {name} = {value!r}")
        if "join" in entry:
            lines.append(f"    {_joining(entry['join'])}")
        lines += _task_lines(entry["tasks"])
        if entry.get("expired"):
            lines.append("    at the deadline, if the group is still open (from its first member):")
            lines += _task_lines(entry["expired"])
        if entry.get("note"):
            lines.append(f"    ({entry['note']})")
        if entry.get("error"):
            lines.append(f"    error: {entry['error']} (the router would dead-letter the event)")
    return "\n".join(lines)


def _task_lines(tasks: list[dict[str, Any]]) -> list[str]:
    lines = []
    for task in tasks:
        dedup = f" (dedup set {task['set']!r})" if task["set"] else " (no dedup set)"
        member = f", a member of group {task['group']!r}" if "group" in task else ""
        lines.append(f"    -> task {task['task']!r} to {_where(task['target'])}{dedup}{member}")
    return lines


def _joining(join: dict[str, Any]) -> str:
    """What a join rule does with the event, as one line."""
    if join.get("fail"):
        return f"fails group {join['group']!r} if it is open, firing:"
    if join["fan_out"]:
        expect = "the members its fan-out recorded"
    elif join["members"]:
        expect = f"{join['expect']}: {', '.join(repr(x) for x in join['members'])}"
    else:
        expect = f"{join['expect']} different members"
    deadline = "" if join["deadline_s"] is None else f", deadline {join['deadline_s']:g} s"
    return (
        f"joins group {join['group']!r} as member {join['member']!r}, expecting {expect}"
        f"{deadline}; when the group completes:"
    )


def _where(target: dict[str, Any]) -> str:
    if target["kind"] == "list":
        return f"list {target['queue']!r}"
    where = f"actor {target['actor']!r} on queue {target['queue']!r}"
    if target["args"]:
        where += f" args={target['args']}"
    where += f" kwargs={target['kwargs']}"
    if target["delay_ms"] is not None:
        where += f" after {target['delay_ms']} ms"
    return where


def explain_schedules(
    schedules: Sequence[Schedule], *, at: int, count: int
) -> list[dict[str, Any]]:
    """For each schedule, its next ``count`` firings after ``at`` (unix seconds), without
    Redis: the tick, its time in the schedule's zone, the event and the target."""
    report = []
    for schedule in schedules:
        spec = schedule.spec
        target: dict[str, Any] = {"kind": "list", "queue": schedule.queue}
        if schedule.actor is not None:
            target = {"kind": "actor", "actor": schedule.actor, "queue": schedule.queue}
        firings = []
        for tick in next_ticks(schedule.ticks, at, count):
            firing: dict[str, Any] = {
                "tick": tick,
                "local": schedule.variables(tick)["iso"],
                "event": schedule.render(tick),
            }
            task = schedule.task(tick)
            if task is not None:
                firing["kwargs"] = actor_kwargs(task)
            firings.append(firing)
        report.append(
            {
                "schedule": spec.name,
                "when": spec.cron if spec.cron is not None else f"every {spec.every_s} s",
                "timezone": spec.timezone,
                "catch_up": spec.catch_up,
                "target": target,
                "firings": firings,
            }
        )
    return report


def format_schedules(report: list[dict[str, Any]]) -> str:
    """Human-readable form of :func:`explain_schedules`."""
    lines = []
    for entry in report:
        target = entry["target"]
        where = f"list {target['queue']!r}"
        if target["kind"] == "actor":
            where = f"actor {target['actor']!r} on queue {target['queue']!r}"
        lines.append(
            f"schedule {entry['schedule']!r}: {entry['when']} ({entry['timezone']}, "
            f"catch_up {entry['catch_up']}) -> {where}"
        )
        for firing in entry["firings"]:
            kwargs = f" kwargs={firing['kwargs']}" if "kwargs" in firing else ""
            lines.append(f"  {firing['local']}  tick {firing['tick']}  {firing['event']!r}{kwargs}")
    return "\n".join(lines) if lines else "no schedules"

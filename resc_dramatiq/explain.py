"""``explain``: what the rules make of an event, without Redis."""

from __future__ import annotations

from typing import Any

from .rules import RuleSet, Task, actor_args, actor_kwargs, decode_event


def explain_event(ruleset: RuleSet, event: str) -> list[dict[str, Any]]:
    """For each watcher whose rules match ``event``: the rules, variables and tasks."""
    text = decode_event(event)
    report = []
    for watcher in ruleset.watchers:
        for m in watcher.matches(text):
            entry: dict[str, Any] = {
                "watcher": watcher.spec.input_queue,
                "rule": m.rule.name,
                "variables": m.variables,
            }
            if m.rule.fetch:
                entry["fetch"] = [f.url for f in m.rule.fetch]
                entry["tasks"] = []
                entry["note"] = "tasks depend on the fetchers' answers"
            else:
                entry["tasks"] = [describe_task(t) for t in m.rule.make(m.index, m.variables)]
            report.append(entry)
    return report


def describe_task(task: Task) -> dict[str, Any]:
    """A task as plain data: the task string, its target and its dedup set."""
    target = task.make.target
    out: dict[str, Any] = {"task": task.task, "set": task.set}
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
        for task in entry["tasks"]:
            target = task["target"]
            where = (
                f"list {target['queue']!r}"
                if target["kind"] == "list"
                else f"actor {target['actor']!r} on queue {target['queue']!r}"
                f" kwargs={target['kwargs']}"
            )
            dedup = f" (dedup set {task['set']!r})" if task["set"] else " (no dedup set)"
            lines.append(f"    -> task {task['task']!r} to {where}{dedup}")
        if entry.get("note"):
            lines.append(f"    ({entry['note']})")
    return "\n".join(lines)

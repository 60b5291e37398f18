"""Compiled rules: patterns, templates and targets, compiled once (pure, no Redis, no I/O).

``WatcherRules.matches(event)`` lists every rule whose regex matches the event, in
config order, as resc does; ``Rule.make`` fills its templates. The planner
(:mod:`.plan`) turns a batch of events into what a commit writes. Variables are
``input_task``, the named groups that took part in the match and, for rules with
fetchers, ``<returns>.<field>`` (supplied by an expander; see :mod:`.fetch`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Config, FetchSpec, MakeSpec, RuleSpec, WatcherSpec
from ..errors import ConfigError, RuleError
from .backtracking import nested_unbounded_repeat
from .templates import VARIABLE, Template

#: Queue names Dramatiq accepts for an actor (see ``dramatiq.actor``): no actor consumes others.
DRAMATIQ_QUEUE = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")

#: Rust's ``(?<name>…)`` named groups, which Python spells ``(?P<name>…)``.
RUST_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a resc regex (Rust syntax for named groups accepted).

    Raises :class:`re.error` for invalid syntax and for patterns that can backtrack
    catastrophically (see :mod:`resc_dramatiq.backtracking`).
    """
    try:
        compiled = re.compile(python_group_syntax(pattern))
        nested = nested_unbounded_repeat(compiled.pattern)
    except OverflowError as e:  # a repeat count such as {4294967296}
        raise re.error(str(e)) from None
    except RecursionError:
        raise re.error("it nests too deeply") from None
    if nested:
        raise re.error(
            "it can backtrack catastrophically (an unbounded quantifier inside another,"
            " as in (a+)+); bound the inner part or make the outer one possessive (++, *+)"
        )
    return compiled


def python_group_syntax(pattern: str) -> str:
    """``pattern`` with Rust's ``(?<name>`` as ``(?P<name>``.

    Escaped parentheses (``\\(?<a``) and character classes (``[(?<a]``) are left alone;
    so are lookbehinds (``(?<=``, ``(?<!``).
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if RUST_NAMED_GROUP.match(pattern, i):
            out.append("(?P<")
            i += 3
            continue
        if pattern[i] == "\\":
            step = 2
        elif pattern[i] == "[":
            step = _class_length(pattern, i)
        else:
            step = 1
        out.append(pattern[i : i + step])
        i += step
    return "".join(out)


def _class_length(pattern: str, start: int) -> int:
    """Length of the character class opening at ``start`` (to its ``]``, or the end)."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):  # a "]" first in the class is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return min(i + 1, len(pattern)) - start


def decode_event(event: bytes | str) -> str:
    """Events are UTF-8; undecodable bytes become U+FFFD instead of crashing."""
    return event if isinstance(event, str) else event.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a made task goes: a raw list, or a Dramatiq actor on a queue."""

    queue: Template
    actor: str | None = None
    args: tuple[Any, ...] | None = None
    kwargs: Mapping[str, Any] | None = None
    delay_ms: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    release: str = "taken"


@dataclass(frozen=True, slots=True)
class Make:
    """A compiled make entry."""

    task: Template
    target: Target
    set: Template | None
    ttl_s: int | None


@dataclass(slots=True)  # not frozen: made per event, and a frozen init costs
class Task:
    """One task an event produced: what, where, and which dedup set guards it."""

    rule: int
    task: str
    queue: str
    set: str | None
    make: Make
    variables: Mapping[str, str]

    @property
    def actor(self) -> str | None:
        """The Dramatiq actor, or None for a raw list push."""
        return self.make.target.actor


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule."""

    name: str
    pattern: re.Pattern[str]
    fetch: tuple[FetchSpec, ...]
    makes: tuple[Make, ...]

    def match(self, event: str) -> dict[str, str] | None:
        """The variables of ``event`` (unanchored search), or None when it does not match."""
        found = self.pattern.search(event)
        if found is None:
            return None
        variables = {k: v for k, v in found.groupdict().items() if v is not None}
        variables["input_task"] = event
        return variables

    def make(self, index: int, variables: Mapping[str, str]) -> list[Task]:
        """The tasks of this rule for one set of variables."""
        tasks = []
        for make in self.makes:
            queue = make.target.queue.render(variables)
            if not queue:
                raise RuleError(f"rule {self.name!r} made an empty queue name")
            tasks.append(
                Task(
                    rule=index,
                    task=make.task.render(variables),
                    queue=queue,
                    set=make.set.render(variables) if make.set is not None else None,
                    make=make,
                    variables=variables,
                )
            )
        return tasks


@dataclass(slots=True)  # not frozen: made per event
class Match:
    """A rule that matched an event, with its variables (before any fetch)."""

    index: int
    rule: Rule
    variables: dict[str, str]


@dataclass(frozen=True, slots=True)
class WatcherRules:
    """The compiled rules of one watcher."""

    spec: WatcherSpec
    rules: tuple[Rule, ...]

    def matches(self, event: str) -> list[Match]:
        """Every rule that matches ``event``, in config order."""
        found = []
        for index, rule in enumerate(self.rules):
            variables = rule.match(event)
            if variables is not None:
                found.append(Match(index, rule, variables))
        return found


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every watcher's compiled rules."""

    config: Config
    watchers: tuple[WatcherRules, ...]

    @classmethod
    def compile(cls, config: Config, *, actor_queues: Mapping[str, str] | None = None) -> RuleSet:
        """Compile regexes and templates; raise :class:`ConfigError` with every problem.

        ``actor_queues`` (actor name -> queue), when the app is known, checks actor
        targets and gives their default queue.
        """
        problems: list[str] = []
        watchers = []
        for w, watcher in enumerate(config.spec.watchers):
            rules = []
            for r, spec in enumerate(watcher.rules):
                path = f"watchers[{w}].rules[{r}]"
                rule = _compile_rule(spec, path, config, actor_queues, problems)
                if rule is not None:
                    rules.append(rule)
            watchers.append(WatcherRules(spec=watcher, rules=tuple(rules)))
        if problems:
            raise ConfigError(problems)
        return cls(config=config, watchers=tuple(watchers))


def _compile_rule(
    spec: RuleSpec,
    path: str,
    config: Config,
    actor_queues: Mapping[str, str] | None,
    problems: list[str],
) -> Rule | None:
    try:
        pattern = compile_pattern(spec.on)
    except re.error as e:
        problems.append(f"{config.locate(path + '.on')}: invalid regex {spec.on!r}: {e}")
        return None
    known = set(pattern.groupindex) | {"input_task"}
    prefixes = {f.returns for f in spec.fetch}
    for i, fetch in enumerate(spec.fetch):
        _check_names(
            Template.compile(fetch.url), known, set(), f"{path}.fetch[{i}].url", config, problems
        )
    makes = []
    for i, make in enumerate(spec.make):
        where = f"{path}.make[{i}]"
        makes.append(_compile_make(make, where, known, prefixes, config, actor_queues, problems))
    return Rule(name=spec.name, pattern=pattern, fetch=spec.fetch, makes=tuple(makes))


def _compile_make(
    make: MakeSpec,
    path: str,
    known: set[str],
    prefixes: set[str],
    config: Config,
    actor_queues: Mapping[str, str] | None,
    problems: list[str],
) -> Make:
    def template(value: str, sub: str) -> Template:
        compiled = Template.compile(value)
        _check_names(compiled, known, prefixes, f"{path}.{sub}", config, problems)
        return compiled

    queue = make.queue
    if make.actor is not None:
        queue = _actor_queue(make, path, config, actor_queues, problems)
    args = kwargs = None
    if make.args is not None:
        args = _compile_value(make.args, template, "args")
    if make.kwargs is not None:
        kwargs = _compile_value(make.kwargs, template, "kwargs")
    target = Target(
        queue=template(queue or "default", "queue"),
        actor=make.actor,
        args=args,
        kwargs=kwargs,
        delay_ms=make.delay_ms,
        options=make.options,
        release=make.release,
    )
    return Make(
        task=template(make.task, "task"),
        target=target,
        set=template(make.set, "set") if make.set is not None else None,
        ttl_s=make.ttl_s,
    )


def _actor_queue(
    make: MakeSpec,
    path: str,
    config: Config,
    actor_queues: Mapping[str, str] | None,
    problems: list[str],
) -> str | None:
    """The queue of an actor target; checked against the app's actors when known."""
    queue, actor = make.queue, make.actor
    if queue is not None and not VARIABLE.search(queue) and not DRAMATIQ_QUEUE.fullmatch(queue):
        problems.append(
            f"{config.locate(path + '.queue')}: {queue!r} is no Dramatiq queue name (a letter"
            " or '_', then letters, digits, '.', '-', '_'): no actor could consume it"
        )
    if actor_queues is None or actor is None:
        return queue
    if actor not in actor_queues:
        close = _close(actor, actor_queues)
        problems.append(f"{config.locate(path + '.actor')}: unknown actor {actor!r}{close}")
    elif queue is None:
        return actor_queues[actor]
    elif queue != actor_queues[actor]:
        problems.append(
            f"{config.locate(path + '.queue')}: actor {actor!r} consumes queue "
            f"{actor_queues[actor]!r}, not {queue!r}"
        )
    return queue


def _compile_value(value: Any, template: Callable[[str, str], Template], sub: str) -> Any:
    """A JSON value with every string inside compiled: dicts stay dicts, lists become tuples."""
    if isinstance(value, str):
        return template(value, sub)
    if isinstance(value, list | tuple):
        return tuple(_compile_value(v, template, f"{sub}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _compile_value(v, template, f"{sub}.{k}") for k, v in value.items()}
    return value


def _check_names(
    template: Template,
    known: set[str],
    prefixes: set[str],
    path: str,
    config: Config,
    problems: list[str],
) -> None:
    for name in template.names:
        if name in known or (name.split(".", 1)[0] in prefixes and "." in name):
            continue
        choices = sorted(known) + [f"{p}.<field>" for p in sorted(prefixes)]
        problems.append(
            f"{config.locate(path)}: unknown variable ${{{name}}}{_close(name, known)}; "
            f"available: {', '.join(choices)}"
        )


def _close(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
    """The kwargs of an actor target: its templates, else the rule's named groups."""
    target = task.make.target
    if target.kwargs is not None:
        return {k: render_value(v, task.variables) for k, v in target.kwargs.items()}
    if target.args is not None:
        return {}
    return {k: v for k, v in task.variables.items() if k != "input_task" and "." not in k}


def actor_args(task: Task) -> list[Any]:
    """The positional args of an actor target (empty unless ``args`` is given)."""
    return [render_value(v, task.variables) for v in task.make.target.args or ()]

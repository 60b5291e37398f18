"""Compiling a config into rules: regexes and templates compiled once, every problem located.

``RuleSet.compile(config)`` checks every regex, every template variable and every
actor target (against the app's actors when known) and raises one
:class:`~resc_dramatiq.errors.ConfigError` listing every problem with its place.

Over ~250 lines on purpose: one pass over the config that locates every problem (rules,
makes, joins, payload fields); split, the passes would share their checks across files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config.joins import JoinSpec
from ..config.makes import MakeSpec
from ..config.model import Config, RuleSpec
from ..errors import ConfigError
from .model import Join, Make, Rule, Target, WatcherRules
from .patterns import PatternError, compile_pattern
from .templates import VARIABLE, Template

#: Queue names Dramatiq accepts for an actor (see ``dramatiq.actor``): no actor consumes others.
DRAMATIQ_QUEUE = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")

#: Rust's ``(?<name>…)`` named groups, which Python spells ``(?P<name>…)``.


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
                rule = _compile_rule(spec, path, config, actor_queues, problems, watcher.data)
                if rule is not None:
                    rules.append(rule)
            watchers.append(WatcherRules(spec=watcher, rules=tuple(rules)))
        problems += _join_name_problems(config)
        if problems:
            raise ConfigError(problems)
        return cls(config=config, watchers=tuple(watchers))


def _join_name_problems(config: Config) -> list[str]:
    """A join rule's name names its groups' rule in Redis (deadlines, status): unique."""
    seen: dict[str, str] = {}
    problems = []
    for w, watcher in enumerate(config.spec.watchers):
        for r, rule in enumerate(watcher.rules):
            if rule.join is None or rule.join.fail:
                continue
            path = f"watchers[{w}].rules[{r}].name"
            if rule.name in seen:
                problems.append(
                    f"{config.locate(path)}: a join rule's name must be unique: "
                    f"{rule.name!r} is also the name of {seen[rule.name]}"
                )
            seen.setdefault(rule.name, config.locate(path))
    return problems


def _compile_rule(
    spec: RuleSpec,
    path: str,
    config: Config,
    actor_queues: Mapping[str, str] | None,
    problems: list[str],
    data: bool = False,
) -> Rule | None:
    try:
        pattern = compile_pattern(spec.on)
    except PatternError as e:
        where = config.locate(path + ".on")
        problems.append(f"{where}: invalid regex {spec.on!r} in rule {spec.name!r}: {e}")
        return None
    known = set(pattern.groupindex) | {"input_task"}
    prefixes = {f.returns for f in spec.fetch} | ({"data"} if data else set())
    for i, fetch in enumerate(spec.fetch):
        _check_names(
            Template.compile(fetch.url), known, set(), f"{path}.fetch[{i}].url", config, problems
        )
    join = None
    if spec.join is not None:
        join, known = _compile_join(spec.join, path, known, config, actor_queues, problems)
        if any(m.members for m in spec.make) and not spec.join.fail:
            join = replace(join, keeps_data=True)
    for i, make in enumerate(spec.make):
        if make.members and (spec.join is None or spec.join.fail):
            problems.append(
                f"{config.locate(f'{path}.make[{i}].members')}: only a join's make receives "
                "its members' payloads"
            )
    makes = []
    for i, make in enumerate(spec.make):
        where = f"{path}.make[{i}]"
        makes.append(_compile_make(make, where, known, prefixes, config, actor_queues, problems))
    return Rule(name=spec.name, pattern=pattern, fetch=spec.fetch, makes=tuple(makes), join=join)


def _compile_join(
    spec: JoinSpec,
    path: str,
    known: set[str],
    config: Config,
    actor_queues: Mapping[str, str] | None,
    problems: list[str],
) -> tuple[Join, set[str]]:
    """The compiled join, and the variables its makes may use (``join.group``, and
    ``join.size`` where the size is known when the event is planned)."""

    def template(value: str, sub: str) -> Template:
        compiled = Template.compile(value)
        _check_names(compiled, known, set(), f"{path}.join.{sub}", config, problems)
        return compiled

    expect: tuple[Template, ...] | int | Template | None = None
    if isinstance(spec.expect, tuple):
        expect = tuple(template(m, f"expect[{i}]") for i, m in enumerate(spec.expect))
    elif isinstance(spec.expect, int):
        expect = spec.expect
    elif spec.expect is not None and not spec.fan_out:
        expect = template(spec.expect, "expect")
    sized = not spec.fail and not spec.fan_out
    made = known | {"join.group"} | ({"join.size"} if sized else set())
    expired = tuple(
        _compile_make(m, f"{path}.join.expired[{i}]", made, set(), config, actor_queues, problems)
        for i, m in enumerate(spec.expired)
    )
    join = Join(
        group=template(spec.group, "group"),
        member=template(spec.member, "member"),
        expect=expect,
        deadline_ms=int((spec.deadline_s or 0) * 1000),
        expired=expired,
        ttl_ms=spec.ttl_s * 1000,
        fail=spec.fail,
    )
    return join, made


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
        data=make.data,
        members=make.members,
    )
    return Make(
        task=template(make.task, "task"),
        target=target,
        set=template(make.set, "set") if make.set is not None else None,
        ttl_s=make.ttl_s,
        group=template(make.group, "group") if make.group is not None else None,
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
        close = did_you_mean(actor, actor_queues)
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
        if name.startswith("data.") and "data" not in prefixes:
            problems.append(
                f"{config.locate(path)}: ${{{name}}} is a payload field, but this watcher "
                "reads no envelopes: give it 'data: true' (docs/data.md)"
            )
            continue
        choices = sorted(known) + [f"{p}.<field>" for p in sorted(prefixes)]
        problems.append(
            f"{config.locate(path)}: unknown variable ${{{name}}}{did_you_mean(name, known)}; "
            f"available: {', '.join(choices)}"
        )


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the choice closest to ``name``, or "" when none is
    close: the hint of every "unknown ..." problem."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""

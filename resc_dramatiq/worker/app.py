"""A Dramatiq app as the rules see it: its broker, its actors' queues, its code rules.

``load_app("example_project.app")`` imports ``module[:attr]`` exactly as the
``dramatiq`` command does (``attr`` names a broker, or a callable that sets the global
broker; without it the global broker is used), then collects the actors (name ->
queue) and the ``@on_done`` rules of every :class:`~resc_dramatiq.worker.registry.Registry`
it can see: the default one and any the module holds as an attribute, and their
``@on_schedule`` schedules and the watchers ``keep_lineage`` names.
``load_app("django")`` (or ``"django:mysite.settings"``) sets a Django project up
instead and reads its installed apps' tasks modules (``django_app``).

:func:`build_ruleset` merges the code rules with an optional config file: file rules
come first, code rules join the watcher whose ``input_queue`` they name (a watcher is
added when the file has none), code schedules join the file's ``schedules``, and every
actor target (of rules and schedules) is checked against the app. The watchers the
app's own envelopes reach read them (:func:`with_envelopes`); those ``keep_lineage``
names keep lineage records (:func:`with_lineage`).

Over ~250 lines on purpose: loading an app and merging what it declares (rules,
schedules, envelopes) into a config is one concept, read top to bottom.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import dramatiq
from dramatiq import Broker

from ..config.model import Config, LineageSpec, RuleSpec, WatcherSpec
from ..config.schedules import ScheduleSpec
from ..errors import ConfigError
from ..rules.ruleset import RuleSet, did_you_mean
from ..rules.schedules import compile_schedules
from .django_app import is_django_spec, setup_django
from .registry import DEFAULT_WATCHER, CodeRule, CodeSchedule, Registry, registry


@dataclass(frozen=True, slots=True)
class BoundRule:
    """A code rule with the actor it sends on the app's broker."""

    rule: CodeRule
    actor_name: str
    queue: str

    def data(self) -> dict[str, Any]:
        """The rule as config data."""
        return self.rule.rule_data(self.actor_name, self.queue)


@dataclass(frozen=True, slots=True)
class BoundSchedule:
    """A code schedule with the actor it sends on the app's broker."""

    schedule: CodeSchedule
    actor_name: str
    queue: str

    def data(self) -> dict[str, Any]:
        """The schedule as config data."""
        return self.schedule.schedule_data(self.actor_name, self.queue)


@dataclass(frozen=True, slots=True)
class App:
    """An imported Dramatiq app."""

    spec: str
    module: ModuleType | None  # None: an app seen from its broker (see of_broker)
    broker: Broker
    rules: tuple[BoundRule, ...]
    schedules: tuple[BoundSchedule, ...] = ()
    #: the watchers ``keep_lineage`` named (input list -> how they keep lineage)
    lineage: Mapping[str, LineageSpec] = field(default_factory=dict)

    @classmethod
    def of_broker(cls, broker: Broker) -> App:
        """The app a worker runs, seen from its ``broker``: the ``@on_done`` rules and
        ``@on_schedule`` schedules of the default registry and of every registry the
        actors' modules hold."""
        modules = {actor.fn.__module__ for actor in broker.actors.values()}
        registries = [registry] + [
            v
            for name in sorted(modules)
            for v in vars(sys.modules.get(name) or ModuleType(name)).values()
            if isinstance(v, Registry)
        ]
        spec = "the worker's broker"
        rules, _ = _bind(registries, broker, owners=(), spec=spec)
        schedules, _ = _bind_schedules(registries, broker, owners=(), spec=spec)
        lineage, problems = _lineage(registries)
        if problems:
            raise ConfigError(problems)
        return cls(spec, None, broker, rules, schedules, lineage)

    @property
    def actor_queues(self) -> Mapping[str, str]:
        """Actor name -> the queue it consumes."""
        return {name: actor.queue_name for name, actor in self.broker.actors.items()}


def load_app(spec: str, *, path: str | Path | None = ".") -> App:
    """Import ``module[:attr]`` as ``dramatiq`` does, or set up the Django project of
    ``django[:settings]``; raise :class:`ConfigError`."""
    if path is not None and str(path) not in sys.path:
        sys.path.insert(0, str(path))
    modname, _, attr = spec.partition(":")
    if is_django_spec(spec):  # a Django project (Django itself is imported only then)
        broker, modules = setup_django(spec)
        return _collect(spec, None, broker, modules)
    try:
        module = importlib.import_module(modname)
    except Exception as e:
        hint = ""
        if os.environ.get("DJANGO_SETTINGS_MODULE"):
            hint = " (a Django project? --app django sets it up first)"
        raise ConfigError(f"--app {spec!r}: cannot import {modname!r}: {e}{hint}") from None
    return _collect(spec, module, _broker_of(spec, module, attr), [module])


def _collect(
    spec: str, module: ModuleType | None, broker: Broker, modules: list[ModuleType]
) -> App:
    """The app of ``broker``: the code rules and schedules of the default registry and of
    the registries ``modules`` hold; each of theirs whose function is no actor of
    ``broker`` is a problem."""
    registries = [
        registry,
        *(v for m in modules for v in vars(m).values() if isinstance(v, Registry)),
    ]
    owners = {m.__name__ for m in modules}
    rules, problems = _bind(registries, broker, owners=owners, spec=spec)
    schedules, more = _bind_schedules(registries, broker, owners=owners, spec=spec)
    lineage, said_twice = _lineage(registries)
    if problems or more or said_twice:
        raise ConfigError(problems + more + said_twice)
    return App(spec, module, broker, rules, schedules, lineage)


def _lineage(registries: list[Registry]) -> tuple[dict[str, LineageSpec], list[str]]:
    """The watchers that keep lineage, as the registries' ``keep_lineage`` said; a problem
    for a watcher two of them said otherwise."""
    found: dict[str, LineageSpec] = {}
    problems: list[str] = []
    for reg in dict.fromkeys(registries):
        for watcher, spec in reg.lineage.items():
            if found.setdefault(watcher, spec) != spec:
                problems.append(
                    f"keep_lineage({watcher!r}): said twice with other settings "
                    f"({found[watcher]}; {spec})"
                )
    return found, problems


def _bind_schedules(
    registries: list[Registry], broker: Broker, *, owners: Collection[str], spec: str
) -> tuple[tuple[BoundSchedule, ...], list[str]]:
    """The code schedules whose actor is on ``broker`` (as :func:`_bind` for rules)."""
    bound: list[BoundSchedule] = []
    problems: list[str] = []
    for code in dict.fromkeys(s for reg in registries for s in reg.schedules):
        actor = code.actor_on(broker)
        if actor is not None:
            bound.append(BoundSchedule(code, actor.actor_name, actor.queue_name))
        elif code.function.__module__ in owners:
            problems.append(f"{code.where}: the function is no actor of {spec!r}'s broker")
    return tuple(bound), problems


def _bind(
    registries: list[Registry], broker: Broker, *, owners: Collection[str], spec: str
) -> tuple[tuple[BoundRule, ...], list[str]]:
    """The code rules whose actor is on ``broker``; a problem for each rule of module
    of ``owners`` whose function is no actor there."""
    rules: list[BoundRule] = []
    problems: list[str] = []
    for code_rule in dict.fromkeys(r for reg in registries for r in reg.rules):
        actor = code_rule.actor_on(broker)
        if actor is not None:
            rules.append(BoundRule(code_rule, actor.actor_name, actor.queue_name))
        elif code_rule.function.__module__ in owners:
            problems.append(f"{code_rule.where}: the function is no actor of {spec!r}'s broker")
    return tuple(rules), problems


def _broker_of(spec: str, module: ModuleType, attr: str) -> Broker:
    if not attr:
        return dramatiq.get_broker()
    value: Any = module
    try:
        for name in attr.split("."):
            value = getattr(value, name)
    except AttributeError:
        raise ConfigError(f"--app {spec!r}: {module.__name__!r} has no {attr!r}") from None
    if isinstance(value, dramatiq.Broker):
        return value
    if callable(value):
        value()
        return dramatiq.get_broker()
    raise ConfigError(f"--app {spec!r}: {attr!r} is not a Dramatiq broker")


def build_ruleset(config: Config | None, app: App | None) -> RuleSet:
    """Merge the app's code rules and schedules into ``config`` and compile against the
    app's actors (schedules too: :func:`compile_schedules` raises what it finds)."""
    if app is None:
        if config is None:
            raise ConfigError("no rules: give a config file, an app with @on_done rules, or both")
        compile_schedules(config)
        return RuleSet.compile(config)
    _check_code_rules(app)
    if config is None:
        if not app.rules and not app.schedules:
            raise ConfigError(f"--app {app.spec!r}: no @on_done rules and no config file")
        grouped: dict[str, list[dict[str, Any]]] = {}
        for bound in app.rules:
            grouped.setdefault(bound.rule.watcher, []).append(bound.data())
        watchers = [{"input_queue": w, "rules": r} for w, r in grouped.items()]
        data = {"watchers": watchers or [{"input_queue": DEFAULT_WATCHER}]}
        config = Config.from_data(data, source=f"--app {app.spec}")
    else:
        config = merge(config, app.rules)
    config = with_schedules(with_envelopes(with_lineage(config, app), app), app)
    return RuleSet.compile(config, actor_queues=app.actor_queues)


def with_lineage(config: Config, app: App) -> Config:
    """``config`` with ``lineage`` on the watchers the app's ``keep_lineage`` names; a
    name no watcher reads, or a watcher whose config says otherwise, is refused."""
    if not app.lineage:
        return config
    inputs = {w.input_queue: w for w in config.spec.watchers}
    problems = []
    for name, spec in app.lineage.items():
        watcher = inputs.get(name)
        if watcher is None:
            hint = did_you_mean(name, inputs)
            known = ", ".join(repr(i) for i in inputs)
            problems.append(
                f"keep_lineage({name!r}): no watcher reads it (watchers: {known}){hint}"
            )
        elif watcher.lineage not in (None, spec):
            problems.append(
                f"keep_lineage({name!r}): {config.source} says otherwise ({watcher.lineage})"
            )
    if problems:
        raise ConfigError(problems)
    watchers = tuple(
        w.model_copy(update={"lineage": app.lineage[w.input_queue]})
        if w.input_queue in app.lineage
        else w
        for w in config.spec.watchers
    )
    return config.with_spec(config.spec.model_copy(update={"watchers": watchers}))


def with_envelopes(config: Config, app: App) -> Config:
    """``config`` with ``data: true`` on the watchers whose events carry payloads the app
    writes or reads: the lists its actors declaring ``done_data`` send their done events
    to (``Completion``'s or the actor's done list; a rule-made message's watcher), and
    the watchers of code rules with ``data=`` (docs/data.md)."""
    lists = {b.rule.watcher for b in app.rules if b.rule.data}
    writers = {n for n, a in app.broker.actors.items() if a.options.get("done_data")}
    # Completion's done list (it is not imported here: it imports this module)
    queues = [getattr(m, "done_queue", None) for m in app.broker.middleware]
    done_queue = next((q for q in queues if isinstance(q, str)), None)
    for name in writers:
        options = app.broker.actors[name].options
        if isinstance(options.get("done_event"), str):
            lists.add(options.get("done_queue") or done_queue or DEFAULT_WATCHER)
    for watcher in config.spec.watchers:
        if any(m.actor in writers for rule in watcher.rules for m in rule.make):
            lists.add(watcher.input_queue)
    if not lists - {w.input_queue for w in config.spec.watchers if w.data}:
        return config
    watchers = tuple(
        w.model_copy(update={"data": True}) if w.input_queue in lists else w
        for w in config.spec.watchers
    )
    return config.with_spec(config.spec.model_copy(update={"watchers": watchers}))


def with_schedules(config: Config, app: App) -> Config:
    """``config`` with the app's code schedules added and each actor schedule's queue
    resolved (the actor's own when not given), checked against the app's actors."""
    added = []
    for bound in app.schedules:
        try:
            added.append(ScheduleSpec.model_validate(bound.data()))
        except ValueError as e:
            raise ConfigError(f"{bound.schedule.where}: {e}") from None
    merged = config.with_spec(
        config.spec.model_copy(update={"schedules": config.spec.schedules + tuple(added)})
    )
    names = [s.name for s in merged.spec.schedules]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{config.source}: two schedules are named {twice[0]!r}")
    compiled = compile_schedules(merged, actor_queues=app.actor_queues)
    resolved = tuple(
        s.spec.model_copy(update={"queue": s.queue}) if s.actor else s.spec for s in compiled
    )
    return merged.with_spec(merged.spec.model_copy(update={"schedules": resolved}))


def merge(config: Config, rules: tuple[BoundRule, ...]) -> Config:
    """``config`` with each code rule appended to the watcher it names (added if new)."""
    extra: dict[str, list[RuleSpec]] = {}
    for bound in rules:
        rule = RuleSpec.model_validate(bound.data())
        extra.setdefault(bound.rule.watcher, []).append(rule)
    watchers = []
    for watcher in config.spec.watchers:
        more = tuple(extra.pop(watcher.input_queue, ()))
        watchers.append(watcher.model_copy(update={"rules": watcher.rules + more}))
    for input_queue, added in extra.items():
        watchers.append(WatcherSpec.model_validate({"input_queue": input_queue, "rules": added}))
    return config.with_spec(config.spec.model_copy(update={"watchers": tuple(watchers)}))


def _check_code_rules(app: App) -> None:
    """Compile each code rule on its own, so a problem names the function, not a path."""
    problems: list[str] = []
    for bound in app.rules:
        watcher = {"input_queue": bound.rule.watcher, "data": bool(bound.rule.data)}
        data = {"watchers": [watcher | {"rules": [bound.data()]}]}
        try:
            RuleSet.compile(
                Config.from_data(data, source=bound.rule.where), actor_queues=app.actor_queues
            )
        except ConfigError as e:
            problems += e.problems
    if problems:
        raise ConfigError(problems)

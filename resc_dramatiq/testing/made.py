"""What an event would make, without a server: :func:`made_by` over ``explain_event``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dramatiq import Broker

from ..config.model import Config
from ..errors import ConfigError
from ..rules.explain import explain_event
from ..rules.ruleset import RuleSet
from ..worker.app import App, build_ruleset

#: What the rules may come as: a rule set, a config (or its file), or a broker whose
#: actors carry ``@on_done`` rules.
RulesLike = RuleSet | Config | str | Path | Broker


def ruleset_of(rules: RulesLike, broker: Broker | None = None) -> RuleSet:
    """Compile ``rules`` as a worker would: a config is merged with the ``@on_done`` rules
    of ``broker``'s actors (when given) and checked against them."""
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, Broker):
        return build_ruleset(None, App.of_broker(rules))
    config = Config.load(rules) if isinstance(rules, str | Path) else rules
    return build_ruleset(config, None if broker is None else App.of_broker(broker))


def made_by(
    rules: RulesLike, event: str, data: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The tasks the rules make of ``event``, in rule order: each as
    :func:`~resc_dramatiq.rules.explain.describe_task` gives it (``task``, ``set`` and
    ``target``: ``kind``, ``queue``, and for an actor ``actor``, ``args``, ``kwargs``,
    ``delay_ms``, ``release``). A join rule's make is listed as the tasks it fires when
    the group completes. A rule that would fail raises :class:`ConfigError` with why."""
    tasks: list[dict[str, Any]] = []
    for entry in explain_event(ruleset_of(rules), event, data):
        if "error" in entry:
            raise ConfigError(f"rule {entry['rule']!r} on {event!r}: {entry['error']}")
        tasks += entry["tasks"]
    return tasks


def routed_ruleset(rules: RulesLike | None, broker: Broker) -> RuleSet | None:
    """The rules a pipeline routes: given ones merged with the ``@on_done`` ones of
    ``broker``'s actors; None when neither has any (done events are then only written)."""
    if rules is None:
        try:
            return ruleset_of(broker)
        except ConfigError as e:
            if any("no @on_done rules" in p for p in e.problems):
                return None
            raise
    return ruleset_of(rules, broker)

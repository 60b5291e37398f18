"""What the fetch tests share: quick retries, the one match of an event."""

from __future__ import annotations

from resc_dramatiq.rules.fetch import FetchOptions
from resc_dramatiq.rules.model import Match
from resc_dramatiq.rules.ruleset import RuleSet

#: Retries that do not slow a test down.
FAST = FetchOptions(backoff_first_s=0.01, backoff_cap_s=0.02)


def match(rules: RuleSet, event: str) -> Match:
    """The one match of ``event`` by the first watcher's rules."""
    [found] = rules.watchers[0].matches(event)
    return found

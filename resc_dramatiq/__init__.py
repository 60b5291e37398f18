"""resc-dramatiq: resc's rule-based task generation for Dramatiq fleets on Redis."""

from .config.model import Config
from .errors import ConfigError, FetchError, OwnershipLost, RescError, RuleError, StoreError
from .rules.ruleset import RuleSet, Task

__all__ = [
    "Config",
    "ConfigError",
    "FetchError",
    "OwnershipLost",
    "RescError",
    "RuleError",
    "RuleSet",
    "StoreError",
    "Task",
]

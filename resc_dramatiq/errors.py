"""Exceptions raised by resc_dramatiq.

The tree::

    RescError
    ├── ConfigError          a config file or code rule is invalid (says where)
    │   ├── InvalidDoneEvent an actor's done_event is not a ${name} template
    │   ├── InvalidDoneData  an actor's done_data is not 'result' nor a callable
    │   ├── LayoutRefused    Redis holds a keyspace layout this release cannot read
    │   └── RedisURLError    a Redis URL cannot be read (also a ValueError)
    ├── RuleError            an event made a rule fail at run time
    │   └── FetchError       a fetcher's HTTP call or response failed
    └── StoreError           a Redis operation failed or met an unexpected state
        ├── OwnershipLost    a batch's events were handed to another instance
        └── WrongType        a key the router writes holds another Redis type
"""

from __future__ import annotations


class RescError(Exception):
    """Base class of every error raised by resc_dramatiq."""


class ConfigError(RescError):
    """Raised when a configuration (file or code rules) is invalid.

    ``problems`` holds one located message per problem found.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class RuleError(RescError):
    """Raised when an event makes a rule fail at run time (missing group, bad value)."""


class FetchError(RuleError):
    """Raised when a fetcher's HTTP request fails or its response has the wrong shape."""


class StoreError(RescError):
    """Raised when Redis answers with an error the router cannot work around."""


class OwnershipLost(StoreError):
    """Raised when a batch's events were reclaimed by another instance before commit."""


class WrongType(StoreError):
    """Raised when a key a commit would write holds another Redis type (nothing written)."""


class RedisURLError(ConfigError, ValueError):
    """Raised when a Redis URL cannot be read (the message names it, password masked)."""


class LayoutRefused(ConfigError):
    """Raised when a router or worker starts on a Redis whose keyspace layout it cannot
    read (the message names the layouts and releases found, and what to do)."""

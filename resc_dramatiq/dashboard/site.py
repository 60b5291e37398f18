"""What a dashboard shows and how it may act: the watchers with their Redis, the settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import redis

from ..rules.model import WatcherRules
from ..rules.ruleset import RuleSet
from ..store.keys import DramatiqKeys, WatcherKeys
from .app_facts import AppFacts
from .hosts import LOOPBACK

#: Environment variable holding the access token (``?token=``, a cookie or a Bearer header).
TOKEN_ENV = "RESC_DASHBOARD_TOKEN"
#: Environment variable holding the basic-auth password (any user name).
PASSWORD_ENV = "RESC_DASHBOARD_PASSWORD"


@dataclass(frozen=True, slots=True)
class WatcherSite:
    """One watcher, its rules and the Redis it lives on."""

    rules: WatcherRules
    client: redis.Redis
    redis_label: str  # the server's URL, password masked: what the pages print

    @property
    def keys(self) -> WatcherKeys:
        """The watcher's keys (no instance: the dashboard is no router)."""
        return WatcherKeys.of(self.rules.spec, "")

    @property
    def input(self) -> str:
        """The watcher's input list, its name on every page."""
        return self.rules.spec.input_queue


@dataclass(frozen=True, slots=True)
class Site:
    """Every watcher the dashboard shows, and the Dramatiq namespace of their queues."""

    ruleset: RuleSet
    watchers: tuple[WatcherSite, ...]
    namespace: str
    app: AppFacts | None = None  # the app's actors (``--app``), for the pipeline graph

    @property
    def dramatiq(self) -> DramatiqKeys:
        """Dramatiq's key names in the site's namespace."""
        return DramatiqKeys(self.namespace)

    def one(self, index: int) -> RuleSet:
        """The rule set of watcher ``index`` alone (what ``ops.status.gather`` reads)."""
        return dataclasses.replace(self.ruleset, watchers=(self.watchers[index].rules,))


@dataclass(frozen=True, slots=True)
class Settings:
    """How the dashboard may be reached and what it may do."""

    read_only: bool = False
    token: str | None = None  # access token; None: no token asked
    password: str | None = None  # basic-auth password; None: none asked
    refresh_s: float = 3.0  # seconds between live refreshes of a page
    page_size: int = 50  # rows per page of every listing
    #: The names a request's Host (and a POST's Origin) may give, each ``name`` (any
    #: port) or ``name:port``; the CLI gives the loopback names and its own address with
    #: its port, and each ``--allowed-host``.
    allowed_hosts: tuple[str, ...] = LOOPBACK

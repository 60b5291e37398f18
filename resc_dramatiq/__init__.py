"""resc-dramatiq: resc's rule-based task generation for Dramatiq fleets on Redis.

Every name a user needs is here; the subpackages (``config``, ``rules``, ``store``,
``router``, ``worker``, ``ops``, ``cli``) are the implementation, in the order data
flows, and may change between releases.

The errors form one tree under :class:`RescError`, drawn in :mod:`resc_dramatiq.errors`.
"""

from .config.joins import Join
from .config.model import Config
from .errors import (
    ConfigError,
    FetchError,
    LayoutRefused,
    OwnershipLost,
    RedisURLError,
    RescError,
    RuleError,
    StoreError,
    WrongType,
)
from .ops.dead import DeadLetter, DeadPage, list_dead
from .ops.dead import drop as drop_dead
from .ops.dead import requeue as requeue_dead
from .ops.dead import select as select_dead
from .ops.dramatiq_dead import (
    DeadMessage,
    DeadMessagePage,
    Moved,
    drop_messages,
    list_dead_messages,
    requeue_messages,
)
from .ops.metrics import RouterMetrics
from .ops.metrics import serve as serve_metrics
from .router.options import Observer, RouterOptions
from .router.router import Router
from .rules.batch import Batch, FailedEvent, PlannedTask
from .rules.explain import explain_event
from .rules.fetch import Fetcher, FetchOptions
from .rules.model import Task
from .rules.plan import Expander, Planner
from .rules.ruleset import RuleSet
from .store.commit import CommitResult
from .store.connect import connect
from .worker.app import App, build_ruleset, load_app
from .worker.completion import Completion
from .worker.done_data import InvalidDoneData
from .worker.done_event import InvalidDoneEvent
from .worker.redelivery import Redelivery
from .worker.registry import Registry, keep_lineage, on_done, on_schedule, registry

__all__ = [
    "App",
    "Batch",
    "CommitResult",
    "Completion",
    "Config",
    "ConfigError",
    "DeadLetter",
    "DeadMessage",
    "DeadMessagePage",
    "DeadPage",
    "Expander",
    "FailedEvent",
    "FetchError",
    "FetchOptions",
    "Fetcher",
    "InvalidDoneData",
    "InvalidDoneEvent",
    "Join",
    "LayoutRefused",
    "Moved",
    "Observer",
    "OwnershipLost",
    "PlannedTask",
    "Planner",
    "Redelivery",
    "RedisURLError",
    "Registry",
    "RescError",
    "Router",
    "RouterMetrics",
    "RouterOptions",
    "RuleError",
    "RuleSet",
    "StoreError",
    "Task",
    "WrongType",
    "build_ruleset",
    "connect",
    "drop_dead",
    "drop_messages",
    "explain_event",
    "keep_lineage",
    "list_dead",
    "list_dead_messages",
    "load_app",
    "on_done",
    "on_schedule",
    "registry",
    "requeue_dead",
    "requeue_messages",
    "select_dead",
    "serve_metrics",
]

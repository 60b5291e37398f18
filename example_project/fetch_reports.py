"""Fetch the reports' stored results from another process than the worker's.

``python -m example_project.fetch_reports`` prints each report's result. The report
actor recorded its message id under its task string; the ``Results`` backend finds
the result from the message's queue, actor and id.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.results.backends.redis import RedisBackend

from resc_dramatiq import connect

REPORTS = "example/reports"
RESULTS_NAMESPACE = "example-results"


def fetch_results(url: str, *, timeout_ms: int = 5_000) -> dict[str, Any]:
    """Task string -> the result its report stored."""
    client = connect(url)
    backend = RedisBackend(client=client, namespace=RESULTS_NAMESPACE)
    found = {}
    for task, message_id in sorted(client.hgetall(REPORTS).items()):
        message = dramatiq.Message(
            queue_name="example-reports",
            actor_name="report",
            args=(),
            kwargs={},
            options={},
            message_id=message_id.decode(),
        )
        found[task.decode()] = backend.get_result(message, block=True, timeout=timeout_ms)
    client.close()
    return found


def main() -> None:
    """Print every stored report result."""
    url = os.environ.get("RESC_REDIS_URL", "redis://127.0.0.1:6379/0")
    for task, result in fetch_results(url).items():
        print(f"{task}: {result}")


if __name__ == "__main__":
    main()

"""Fetch the reports' stored results from another process than the worker's.

``python -m example_project.fetch_reports`` prints each report's result. Each product's
summary holds its children's reports as their done events carried them, each with its
message id; the ``Results`` backend finds a result from its message's queue, actor and id.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq
from dramatiq.results.backends.redis import RedisBackend

from resc_dramatiq import connect

SUMMARIES = "example/summaries"
RESULTS_NAMESPACE = "example-results"


def fetch_results(url: str, *, timeout_ms: int = 5_000) -> dict[str, Any]:
    """Task string -> the result its report stored."""
    client = connect(url)
    backend = RedisBackend(client=client, namespace=RESULTS_NAMESPACE)
    found = {}
    ids = {
        f"rep/{product.decode()}/{child}": report["message_id"]
        for product, summary in client.hgetall(SUMMARIES).items()
        for child, report in json.loads(summary).items()
    }
    for task, message_id in sorted(ids.items()):
        message = dramatiq.Message(
            queue_name="example-reports",
            actor_name="report",
            args=(),
            kwargs={},
            options={},
            message_id=message_id,
        )
        found[task] = backend.get_result(message, block=True, timeout=timeout_ms)
    client.close()
    return found


def main() -> None:
    """Print every stored report result."""
    url = os.environ.get("RESC_REDIS_URL", "redis://127.0.0.1:6379/0")
    for task, result in fetch_results(url).items():
        print(f"{task}: {result}")


if __name__ == "__main__":
    main()

"""The example app: a Dramatiq broker with Completion, and the pipeline's actors.

Run workers with ``dramatiq example_project.app`` (from the repository root); the
broker's Redis is ``$RESC_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).

Stages, all rule-made except the producer's root events:

* ``acq/<process>/<product>`` (pushed by ``producer.py``) -> ``treat`` (file rule,
  deduplicated per product; flaky on purpose for every 5th product: ``Retries``
  re-runs it, the done event still comes once; ``TimeLimit`` caps it at 5 s);
* ``trt/<process>/<product>`` -> ``propagate`` to the children ``a`` and ``b`` (file rule);
* ``prop/<process>/<product>/<child>`` -> ``report`` (``@on_done`` rule, below): it
  stores its result with the ``Results`` middleware, and its done event carries it
  (``done_data``), with its message id;
* ``rep/<process>/<product>/a`` and ``.../b`` -> ``summarize`` (a join, below): once
  per product, when the reports of both of its children are done; it receives both
  reports (``members=``) and keeps them in ``example/summaries``, where
  ``fetch_reports.py``, in another process, finds each report's message id to fetch its
  stored result.

Every actor counts its runs in the ``example/runs`` hash (task -> runs), so the demo
can prove each task ran exactly once.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from resc_dramatiq import Completion, Join, connect, on_done

REDIS_URL = os.environ.get("RESC_REDIS_URL", "redis://127.0.0.1:6379/0")
DONE = "example/done"
RUNS = "example/runs"
ATTEMPTS = "example/attempts"
SUMMARIES = "example/summaries"  # product -> its children's reports (JSON)
RESULTS_NAMESPACE = "example-results"

broker = RedisBroker(client=connect(REDIS_URL))  # any URL form, Sentinel included
# Before Retries: Completion must see the final verdict (after_* hooks run in reverse).
broker.add_middleware(Completion(done_queue=DONE), before=Retries)
results = RedisBackend(client=connect(REDIS_URL), namespace=RESULTS_NAMESPACE)
broker.add_middleware(Results(backend=results, result_ttl=3_600_000))
dramatiq.set_broker(broker)


def record(task: str) -> None:
    """Count one run of ``task``."""
    broker.client.hincrby(RUNS, task, 1)


@dramatiq.actor(queue_name="example-treatments", time_limit=5_000, min_backoff=100, max_backoff=500)
def treat(process_id: str, product_id: str) -> None:
    """Treat a freshly acquired product; every 5th product fails on its first attempt."""
    task = f"trt/{process_id}/{product_id}"
    if int(product_id) % 5 == 0 and broker.client.hincrby(ATTEMPTS, task, 1) == 1:
        raise RuntimeError(f"{task}: transient failure (Retries will run it again)")
    record(task)


@dramatiq.actor(queue_name="example-propagation")
def propagate(process_id: str, product_id: str, child: str) -> None:
    """Propagate a treated product to one of its children."""
    record(f"prop/{process_id}/{product_id}/{child}")


def report_data(result: dict[str, str], message: dramatiq.Message[Any]) -> dict[str, str]:
    """The payload of a report's done event: its result, and its message id (the key of
    its stored result)."""
    return {**result, "message_id": message.message_id}


@on_done(
    r"^prop/(?P<process_id>\d+)/(?P<product_id>\d+)/(?P<child>[ab])$",
    task="rep/${process_id}/${product_id}/${child}",
    watcher=DONE,
)
@dramatiq.actor(queue_name="example-reports", store_results=True, done_data=report_data)
def report(process_id: str, product_id: str, child: str) -> dict[str, str]:
    """Write the report of a child product; its result is stored for other processes,
    and travels with its done event."""
    record(f"rep/{process_id}/{product_id}/{child}")
    return {"product": f"{product_id}{child}", "process": process_id, "status": "ok"}


@on_done(
    r"^rep/(?P<process_id>\d+)/(?P<product_id>\d+)/(?P<child>[ab])$",
    join=Join(group="product/${process_id}/${product_id}", member="${child}", expect=["a", "b"]),
    members="reports",
    watcher=DONE,
)
@dramatiq.actor(queue_name="example-summaries", done_event=False)  # a leaf: no done event
def summarize(process_id: str, product_id: str, reports: dict[str, Any]) -> None:
    """Summarize a product once both of its children's reports are done: ``reports`` is
    what each report returned (child -> payload), passed along by the pipeline."""
    broker.client.hset(SUMMARIES, f"{process_id}/{product_id}", json.dumps(reports))
    record(f"sum/{process_id}/{product_id}")

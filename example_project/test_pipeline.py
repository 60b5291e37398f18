"""The example pipeline's own tests, on resc_dramatiq's testing kit (docs/testing.md):
``python -m pytest example_project`` from the repository root (the ``testing`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from example_project import app, producer
from resc_dramatiq.testing import made_by

RULES = Path(__file__).with_name("pipeline.hjson")


def test_an_acquisition_makes_its_treatment() -> None:  # no server
    [made] = made_by(RULES, "acq/1/100")
    assert (made["task"], made["target"]["actor"]) == ("trt/1/100", "treat")


def test_every_stage_runs_once_per_product_and_reports_reach_the_summary(
    resc_pipeline: Any,
) -> None:
    pipeline = resc_pipeline(app.broker, rules=RULES, inline=False)  # root events: a router
    events = [e for event in producer.root_events(3) for e in (event, event)]  # each twice
    app.broker.client.lpush(producer.DONE, *events)
    pipeline.run_until_idle(timeout_s=10)  # treat of product 100 fails once: Retries
    assert {a: n for a, n in pipeline.counts().items() if n} == {
        "treat": 3,  # each product once, however often acquired
        "propagate": 6,
        "report": 6,
        "summarize": 3,
    }
    [retried] = pipeline.runs("treat", outcome="retried")  # product 100's first attempt
    assert retried.kwargs == {"process_id": "1", "product_id": "100"}
    summary = json.loads(app.broker.client.hget(app.SUMMARIES, "1/100") or b"{}")
    assert summary["a"]["product"] == "100a" and summary["b"]["status"] == "ok"

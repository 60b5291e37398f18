"""Router metrics for Prometheus: exact counts, own registry, a real scraped endpoint."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from resc_dramatiq import Router, RouterOptions
from resc_dramatiq.config.model import Config
from resc_dramatiq.ops.metrics import RouterMetrics, serve
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import wait_for
from tests.procs import CLI, own_redis, routers, url_of

IN = "in"
#: acq/N queues a deduplicated task; bad/<queue>/<task> with an empty queue dies at once.
CONFIG = {
    "watchers": [
        {
            "input_queue": IN,
            "max_attempts": 1,
            "rules": [
                {
                    "name": "acq",
                    "on": r"^acq/(?P<n>\d+)$",
                    "make": {"task": "trt/${n}", "queue": "trt", "set": "todo"},
                },
                {
                    "name": "split",
                    "on": r"^bad/(?P<q>[^/]*)/(?P<t>.*)$",
                    "make": {"task": "${t}", "queue": "${q}"},
                },
            ],
        }
    ]
}
#: Five events: two tasks queued, one duplicate, one dead-lettered, one unmatched.
EVENTS = ["acq/1", "acq/2", "acq/1", "bad//x", "nothing/to/do"]
EXPECTED = {
    "resc_events_taken_total": 5,
    "resc_tasks_queued_total": 2,
    "resc_tasks_deduplicated_total": 1,
    "resc_events_dead_lettered_total": 1,
    "resc_events_unmatched_total": 1,
    "resc_events_retried_total": 0,
    "resc_redis_reconnects_total": 0,
}


def router_with(metrics: RouterMetrics, client: redis.Redis, **options: float) -> Router:
    return Router(
        ruleset=RuleSet.compile(Config.from_data(CONFIG)),
        client=client,
        options=RouterOptions(**options),  # type: ignore[arg-type]
        observer=metrics,
    )


def value(metrics: RouterMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"watcher": IN})


def scrape(url: str) -> dict[str, float]:
    """The samples of ``IN`` (histogram buckets left out) on a metrics endpoint."""
    text = httpx.get(url, timeout=5).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("watcher") == IN and "le" not in s.labels
    }


def test_a_committed_batch_counts_events_tasks_duplicates_dead_and_unmatched(
    r: redis.Redis,
) -> None:
    metrics = RouterMetrics()
    r.lpush(IN, *EVENTS)
    router_with(metrics, r).run_until_idle()
    assert {name: value(metrics, name) or 0 for name in EXPECTED} == EXPECTED
    assert r.llen("trt") == 2
    assert r.llen(f"{IN}/dead") == 1


def test_each_batch_is_observed_in_the_size_and_latency_histograms(r: redis.Redis) -> None:
    metrics = RouterMetrics()
    r.lpush(IN, *EVENTS)
    router_with(metrics, r, batch_size=2).run_until_idle()
    assert value(metrics, "resc_batch_size_count") == 3  # 2 + 2 + 1
    assert value(metrics, "resc_batch_size_sum") == 5
    assert value(metrics, "resc_commit_duration_milliseconds_count") == 3
    assert (value(metrics, "resc_commit_duration_milliseconds_sum") or 0) > 0
    assert value(metrics, "resc_event_to_commit_milliseconds_count") == 3


def test_metrics_live_in_their_own_registry_never_the_global_one() -> None:
    first, second = RouterMetrics(), RouterMetrics()  # no clash of duplicate names
    assert first.registry is not second.registry
    assert REGISTRY.get_sample_value("resc_events_taken_total", {"watcher": IN}) is None
    assert not [family for family in REGISTRY.collect() if family.name.startswith("resc_")]


def test_declared_watchers_are_served_at_zero_before_their_first_batch() -> None:
    metrics = RouterMetrics()
    metrics.declare(IN)
    server = serve(metrics, port=0)
    try:
        assert server.port > 0
        samples = scrape(server.url)
    finally:
        server.close()
    assert {name: samples[name] for name in EXPECTED} == dict.fromkeys(EXPECTED, 0)


def test_a_redis_outage_counts_one_reconnect_per_watcher() -> None:
    metrics = RouterMetrics()
    with own_redis() as server:
        client = redis.Redis.from_url(url_of(server), retry=Retry(NoBackoff(), 0))
        router = router_with(metrics, client, block_s=0.2)
        thread = threading.Thread(target=router.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: router.loops[0].healthy, what="the watcher runs")
            server.stop()
            wait_for(lambda: router.loops[0].down, what="the watcher sees Redis fail")
            server.start()
            wait_for(lambda: value(metrics, "resc_redis_reconnects_total"), what="reconnect")
            client.lpush(IN, "acq/1")
            wait_for(lambda: value(metrics, "resc_tasks_queued_total"), what="routing again")
        finally:
            router.stop()
            thread.join(timeout=20)
            client.close()
    assert value(metrics, "resc_redis_reconnects_total") == 1
    assert not thread.is_alive()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(CONFIG))
    return path


def test_a_running_router_serves_exact_counts_on_its_metrics_endpoint(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    with routers(config=config, redis_url=redis_url, log=tmp_path / "router.log") as start:
        process = start(extra=("--metrics-port", "0"))
        found = wait_for(
            lambda: re.search(r"metrics on (http://\S+/metrics)", process.output()),
            what="the metrics address in the log",
        )
        url = found.group(1)
        assert scrape(url)["resc_events_taken_total"] == 0
        r.lpush(IN, *EVENTS)
        samples = wait_for(
            lambda: (s := scrape(url))["resc_events_taken_total"] == len(EVENTS) and s,
            what="every event counted",
        )
        assert {name: samples[name] for name in EXPECTED} == EXPECTED
        assert samples["resc_batch_size_sum"] == len(EVENTS)
        assert "process_resident_memory_bytes" in httpx.get(url, timeout=5).text
        assert process.signal(signal.SIGTERM) == 0


def test_a_metrics_port_in_use_exits_1_with_the_reason(redis_url: str, config: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [CLI, "router", str(config), "--redis-url", redis_url, "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"error: cannot serve metrics on 127.0.0.1:{port}" in result.stderr

"""The cost of the wait option, and the failover figures, on a real Sentinel deployment.

Starts a primary, a replica and three Sentinels (``tests/sentinel.py``), then, in the
same run and on the same servers:

1. routes a prefilled input list (raw targets, one dedup set) with an in-process
   ``Router`` through ``connect(<Sentinel URL>)``, without and with ``wait_replicas=1``,
   for each batch size: events per second;
2. runs ``tests/failover.py`` once with the wait option and once without: kill -9 of the
   primary under three routers and two Dramatiq workers, the time to the first commit
   on the promoted replica, what was lost.

``python -m benchmarks.failover [--events N] [--repeat K] [--no-failover]``; prints a
table, then the figures of the two failover runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from resc_dramatiq import Config, Router, RouterOptions, build_ruleset, connect  # noqa: E402
from tests.sentinel import sentinel_cluster  # noqa: E402

INPUT = "bench/in"
RULES: dict[str, Any] = {
    "watchers": [
        {
            "input_queue": INPUT,
            "rules": [
                {
                    "on": r"^acq/(?P<n>\d+)$",
                    "make": {"task": "trt/${n}", "queue": "bench/todo", "set": "bench/set"},
                }
            ],
        }
    ]
}


def route(url: str, *, events: int, batch: int, wait_replicas: int) -> float:
    """Events per second routing ``events`` prefilled events through ``url``."""
    client = connect(url)
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for first in range(0, events, 1000):
        pipe.lpush(INPUT, *(f"acq/{i}" for i in range(first, min(first + 1000, events))))
    pipe.execute()
    client.wait(1, 5000)  # the prefill on the replica before timing
    ruleset = build_ruleset(Config.from_data(RULES), None)
    options = RouterOptions(batch_size=batch, wait_replicas=wait_replicas)
    router = Router(ruleset=ruleset, client=client, instance="bench", options=options)
    began = time.perf_counter()
    done = router.run_until_idle()
    elapsed = time.perf_counter() - began
    assert done == events, (done, events)
    client.close()
    return events / elapsed


def wait_latency_us(url: str, *, samples: int = 2000) -> tuple[float, float]:
    """(median, p99) in µs of one ``WAIT 1`` after a write, on the write's connection,
    minus the same pipeline without the ``WAIT``."""
    client = connect(url)

    def timed(wait: bool) -> list[float]:
        got = []
        for i in range(samples):
            began = time.perf_counter()
            with client.pipeline(transaction=False) as pipe:
                pipe.set("bench/k", i)
                if wait:
                    pipe.wait(1, 1000)
                pipe.execute()
            got.append((time.perf_counter() - began) * 1e6)
        return sorted(got)

    bare, waited = timed(False), timed(True)
    client.close()
    p99 = int(samples * 0.99)
    return waited[samples // 2] - bare[samples // 2], waited[p99] - bare[p99]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-failover", action="store_true")
    args = parser.parse_args()
    rows = []
    with sentinel_cluster() as cluster:
        for batch in (50, 500):
            plain, waited = [], []
            for _ in range(args.repeat):  # interleaved: the VM's speed drifts
                plain.append(route(cluster.url, events=args.events, batch=batch, wait_replicas=0))
                waited.append(route(cluster.url, events=args.events, batch=batch, wait_replicas=1))
            rows.append((batch, statistics.median(plain), statistics.median(waited)))
        median_us, p99_us = wait_latency_us(cluster.url)
    print(f"routing {args.events} events through Sentinel (raw target, dedup set), ")
    print(f"median of {args.repeat} interleaved runs each:")
    print("| batch | no wait (events/s) | wait_replicas=1 (events/s) | cost |")
    print("|---|---|---|---|")
    for batch, plain, waited in rows:
        print(f"| {batch} | {plain:,.0f} | {waited:,.0f} | {1 - waited / plain:.0%} |")
    print(f"WAIT 1 after a write costs {median_us:.0f} µs (median), {p99_us:.0f} µs (p99)")
    if args.no_failover:
        return
    from tests.failover import run_failover

    for wait in (True, False):
        with tempfile.TemporaryDirectory(prefix="fo") as workdir:
            figures = run_failover(Path(workdir), wait=wait)
        print(figures.report())
        print(json.dumps({"wait": wait, "first_commit_s": round(figures.first_commit_s, 2)}))


if __name__ == "__main__":
    main()

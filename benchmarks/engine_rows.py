"""The rows a change of regex engine moves: resc's loop, the raw target, 1 and 300 rules.

``python benchmarks/engine_rows.py [--events N] [--repeat R]`` starts the embedded
server and measures, for the ``resc_dramatiq`` on the path (set ``PYTHONPATH`` to a
checkout of another commit to measure that one; the router subprocess inherits it):
resc's algorithm (``baseline.py``), the router on the raw target (``routerbench.py``),
and the router with 1 and with 300 rules of distinct literal prefixes (``scaling.py``'s
rows). Each router row is the best of ``--repeat`` runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import redis
import routerbench
import scaling
from rules_scaling import prefixed

import resc_dramatiq
from resc_dramatiq.ops.embedded import EmbeddedRedis


def main() -> None:
    """Measure the rows and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--baseline-events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    out: dict[str, Any] = {"package": str(Path(resc_dramatiq.__file__).parent)}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        client = redis.Redis.from_url(server.url)
        client.flushdb()
        out["baseline"] = routerbench.baseline_events_per_s(client, args.baseline_events)
        rows: dict[str, float] = {"raw": 0.0, "1 prefixed": 0.0, "300 prefixed": 0.0}
        for _ in range(args.repeat):
            t = routerbench.throughput(
                client, server.url, workdir, target="raw", events=args.events, batch=args.batch
            )
            rows["raw"] = max(rows["raw"], t.events_per_s)
            for count in (1, 300):
                patterns, event = prefixed(count)
                config = scaling._write(
                    workdir / f"rules-{count}.json", [scaling._watcher(routerbench.INPUT, patterns)]
                )

                def fill(event: Any = event) -> dict[str, str]:
                    routerbench.prefill(client, scaling.STAGE, args.events, event=event)
                    return {scaling.STAGE: routerbench.INPUT}

                r = scaling._rate(client, server.url, config, args.events, fill, batch=args.batch)
                label = f"{count} prefixed"
                rows[label] = max(rows[label], r.events_per_s)
        out |= rows
        out["raw_ratio"] = rows["raw"] / out["baseline"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Feed root events: ``python -m example_project.producer [N]`` (from the repository root).

Each acquisition ``acq/<process>/<product>`` is pushed twice, as a flaky instrument
might: the treatment rule's dedup set lets only one through.
"""

from __future__ import annotations

import os
import sys

from resc_dramatiq import connect

DONE = "example/done"


def root_events(count: int) -> list[str]:
    """``count`` acquisitions over three processes, products 100, 101, …"""
    return [f"acq/{1 + i % 3}/{100 + i}" for i in range(count)]


def main() -> None:
    """LPUSH the events, each twice, in one call (oldest first for the router)."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    url = os.environ.get("RESC_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = connect(url)
    events = [e for event in root_events(count) for e in (event, event)]
    client.lpush(DONE, *events)
    print(f"pushed {len(events)} events ({count} distinct) onto {DONE!r}")


if __name__ == "__main__":
    main()

"""How long the dashboard's pages take on a large state.

``python benchmarks/dashboard_pages.py [--redis-url URL] [--dead N] [--set N] [--runs R]
[--other-keys N]``
fills a Redis (an embedded one unless ``--redis-url``, whose database is **flushed**)
with ``--dead`` dead letters (200,000 by default), a dedup set of ``--set`` entries
(1,000,000), 10,000 dead Dramatiq messages and a raw list, serves the real dashboard
(uvicorn, in a thread of this process) and times each page over HTTP: the median and
the slowest of ``--runs`` requests, the server's whole answer (Redis reads, rendering).
``--other-keys`` adds that many unrelated keys: the pages that find the concrete targets
and sets of templates (``out/${q}``) ``SCAN`` the keyspace, as ``status`` does.

It also times what the per-minute history adds to a commit (a script making the same
HINCRBY and EXPIRE calls as a batch's history, against one making none), and, last, what
the confirmation of "requeue all" does: ``ops.dead.requeue`` of every dead letter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resc_dramatiq.config.model import Config
from resc_dramatiq.dashboard import Settings, Site, WatcherSite, create_app
from resc_dramatiq.dashboard.server import ServerThread
from resc_dramatiq.ops.dead import ALL, requeue
from resc_dramatiq.ops.embedded import EmbeddedRedis
from resc_dramatiq.rules.ruleset import RuleSet
from tests.dashboard_server import RULES, dead_message
from tests.procs import free_port

PAGES = [
    ("pipeline", "/pipeline"),
    ("watchers", "/watchers"),
    ("watcher, dead letters, first page", "/watchers/0"),
    ("watcher, dead letters, last page", "/watchers/0?offset={last_dead}"),
    ("watcher, dead letters, filtered (10,000 scanned)", "/watchers/0?match=%5Ee5%24"),
    ("targets", "/targets"),
    ("Dramatiq queue, dead messages, first page", "/watchers/0/queue?name=jobs"),
    ("Dramatiq queue, dead messages, last page", "/watchers/0/queue?name=jobs&offset=9950"),
    ("dedup sets", "/dedup"),
    ("dedup set, first page", "/watchers/0/set?key=todo"),
    ("dedup set, last page", "/watchers/0/set?key=todo&offset={last_set}"),
    ("dedup set, entries past ttl_s", "/watchers/0/set?key=todo&past=1"),
    ("dedup set, search (20,000 scanned)", "/watchers/0/set?key=todo&q=t999999x"),
    ("processes", "/processes"),
]

HISTORY_LUA = """
for i = 1, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
redis.call('EXPIRE', KEYS[1], 10800)
return 1
"""
NOTHING_LUA = "return 1"


def fill(client: redis.Redis, dead: int, entries: int) -> None:
    """The large state: dead letters, a dedup set, dead messages, a raw list."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, dead, 5000):
        pipe.lpush(
            "in/dead",
            *(
                f'{{"event": "e{i}", "rule": "split", "error": "RuleError: boom", '
                f'"attempts": 1, "watcher": "in", "at": 1796000000}}'
                for i in range(start, min(dead, start + 5000))
            ),
        )
        pipe.execute()
    now = time.time()
    for start in range(0, entries, 10_000):
        batch = {f"t{i}": now - (entries - i) for i in range(start, min(entries, start + 10_000))}
        pipe.zadd("todo", batch)
        pipe.execute()
    for n in range(10_000):
        dead_message(client, [n])
    client.lpush("out/a", *(f"task-{i}" for i in range(10_000)))


def time_pages(url: str, runs: int, dead: int, entries: int) -> list[tuple[str, float, float]]:
    found = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for name, path in PAGES:
            path = path.format(last_dead=dead - 50, last_set=entries - 50)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                answer = http.get(path)
                times.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise SystemExit(f"{path}: {answer.status_code}")
            found.append((name, statistics.median(times), max(times)))
    return found


def history_cost_us(client: redis.Redis, fields: int, calls: int = 5000) -> tuple[float, float]:
    """µs per call of a script writing ``fields`` history counters, and of an empty one."""
    history, nothing = client.register_script(HISTORY_LUA), client.register_script(NOTHING_LUA)
    names = [f"rule{i}|queued" for i in range(fields)]
    results = []
    for script, args in ((history, names), (nothing, names)):
        pipe = client.pipeline(transaction=False)
        started = time.perf_counter()
        for start in range(0, calls, 500):
            for _ in range(min(500, calls - start)):
                script(keys=["bench/history"], args=args, client=pipe)
            pipe.execute()
        results.append((time.perf_counter() - started) / calls * 1e6)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--dead", type=int, default=200_000)
    parser.add_argument("--set", dest="entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--other-keys", type=int, default=0)
    options = parser.parse_args()
    with ExitStack() as stack:
        url = options.redis_url or stack.enter_context(EmbeddedRedis()).url
        client = redis.Redis.from_url(url)
        client.flushdb()
        started = time.perf_counter()
        fill(client, options.dead, options.entries)
        pipe = client.pipeline(transaction=False)
        for start in range(0, options.other_keys, 10_000):
            end = min(options.other_keys, start + 10_000)
            pipe.mset({f"other:{i}": 1 for i in range(start, end)})
            pipe.execute()
        print(f"filled in {time.perf_counter() - started:.1f}s: {options.dead} dead letters, "
              f"a set of {options.entries}, 10000 dead messages")  # fmt: skip
        ruleset = RuleSet.compile(Config.from_data(RULES))
        site = Site(ruleset, (WatcherSite(ruleset.watchers[0], client, url),), "dramatiq")
        server = stack.enter_context(ServerThread(create_app(site, Settings()), port=free_port()))
        print(f"| page | median (ms) | slowest of {options.runs} (ms) |")
        print("|---|---:|---:|")
        for name, median, worst in time_pages(
            server.url, options.runs, options.dead, options.entries
        ):
            print(f"| {name} | {median * 1000:.0f} | {worst * 1000:.0f} |")
        for fields in (5, 12, 30):
            with_history, without = history_cost_us(client, fields)
            print(f"history of {fields} counters: {with_history:.1f} µs per script call, "
                  f"an empty script {without:.1f} µs")  # fmt: skip
        started = time.perf_counter()
        moved = requeue(client, site.watchers[0].keys, ALL)
        print(f"requeue all: {moved} dead letters in {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    main()

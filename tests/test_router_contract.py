"""The router's contract with producers and resc workers, in process, on a real Redis.

resc's seed scenario, a raw worker driving a chain, listener lines byte for byte,
poison events, unmatched events.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import pytest
import redis

from resc_dramatiq import Router, RouterOptions
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import FetchError
from resc_dramatiq.router.router import stats
from resc_dramatiq.rules.model import Match
from resc_dramatiq.rules.ruleset import RuleSet
from tests.conftest import EXAMPLES
from tests.helpers import wait_for


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    """Routers and worker threads open more connections on ``r``: close them after."""
    yield
    r.connection_pool.disconnect()


DONE = "global/done"


def rules(data: dict[str, Any]) -> RuleSet:
    return RuleSet.compile(Config.from_data(data))


def one_watcher(*rule_list: dict[str, Any], **watcher: Any) -> RuleSet:
    return rules({"watchers": [{"input_queue": DONE, **watcher, "rules": list(rule_list)}]})


@contextmanager
def running(router: Router) -> Iterator[Router]:
    """``router.run()`` in a thread, stopped and joined on exit."""
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    try:
        yield router
    finally:
        router.stop()
        thread.join(10)
        assert not thread.is_alive()


def test_seed_event_queues_the_treatment_on_its_list_and_in_its_products_set(
    r: redis.Redis,
) -> None:
    router = Router(ruleset=RuleSet.compile(Config.load(EXAMPLES / "demo.conf.json")), client=r)
    r.lpush(DONE, "acq/123/456")
    router.run_until_idle()
    assert r.lrange("trt/123/todo", 0, -1) == [b"trt/123/456"]
    [(member, score)] = r.zrange("products/456/todo", 0, -1, withscores=True)
    assert member == b"trt/123/456"
    assert score == int(score)  # whole unix seconds, as resc writes them
    assert abs(score - time.time()) < 5


def test_the_same_seed_event_again_queues_nothing(r: redis.Redis) -> None:
    router = Router(ruleset=RuleSet.compile(Config.load(EXAMPLES / "demo.conf.json")), client=r)
    r.lpush(DONE, "acq/123/456")
    router.run_until_idle()
    r.lpush(DONE, "acq/123/456")
    router.run_until_idle()
    assert r.lrange("trt/123/todo", 0, -1) == [b"trt/123/456"]
    assert r.zcard("products/456/todo") == 1
    assert stats(r, router.loops[0].keys)["deduplicated"] == 1


CHAIN = [
    {
        "name": "treat",
        "on": r"^acq/(?P<p>\d+)$",
        "make": {"task": "trt/${p}", "queue": "trt/todo", "set": "products/${p}/todo"},
    },
    {
        "name": "propagate",
        "on": r"^trt/(?P<p>\d+)$",
        "make": {"task": "prop/${p}", "queue": "prop/todo"},
    },
    {
        "name": "report",
        "on": r"^prop/(?P<p>\d+)$",
        "make": {"task": "rep/${p}", "queue": "rep/todo"},
    },
]


def resc_worker(r: redis.Redis, queue: str, stop: threading.Event, ran: list[str]) -> None:
    """A worker exactly as resc documents it, in any language."""
    taken = f"{queue}/worker-taken"
    while not stop.is_set():
        task = r.brpoplpush(queue, taken, timeout=0.1)
        if task is None:
            continue
        text = task.decode()
        if queue == "trt/todo":
            r.zrem(f"products/{text.split('/')[1]}/todo", task)
        ran.append(text)
        r.lpush(DONE, task)
        r.lrem(taken, 1, task)


def test_a_raw_resc_worker_drives_a_chain_of_three_rules_to_the_end(r: redis.Redis) -> None:
    stop, ran = threading.Event(), list[str]()
    queues = ("trt/todo", "prop/todo", "rep/todo")
    workers = [threading.Thread(target=resc_worker, args=(r, q, stop, ran)) for q in queues]
    for worker in workers:
        worker.start()
    try:
        with running(Router(ruleset=one_watcher(*CHAIN), client=r)) as router:
            r.lpush(DONE, *[f"acq/{i}" for i in range(10)])
            keys = router.loops[0].keys
            wait_for(lambda: stats(r, keys).get("unmatched") == 10, what="10 reports done")
    finally:
        stop.set()
        for worker in workers:
            worker.join(5)
    expected = {f"{stage}/{i}" for stage in ("trt", "prop", "rep") for i in range(10)}
    assert sorted(ran) == sorted(expected)  # every stage ran, each exactly once
    assert not [k for k in r.keys("*taken*") if r.type(k) == b"list" and r.llen(k)]
    assert not r.keys("products/*")  # the worker released every dedup entry


def test_listener_channel_gets_resc_trigger_and_done_lines_byte_for_byte(
    r: redis.Redis,
) -> None:
    ruleset = rules(
        {
            "listener_channel": "resc/notes",
            "watchers": [{"input_queue": DONE, "taken_queue": "global/taken", "rules": CHAIN}],
        }
    )
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("resc/notes")
    r.lpush(DONE, "acq/7")
    Router(ruleset=ruleset, client=r).run_until_idle()
    assert published(pubsub, 2) == [
        b"global/taken TRIGGER acq/7 -> trt/7",
        b"global/taken DONE acq/7",
    ]


def published(pubsub: Any, count: int) -> list[bytes]:
    """``count`` messages (5 s at most) and any that follow within 0.3 s; closes ``pubsub``."""
    lines: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(lines) < count and time.monotonic() < deadline:
        if (message := pubsub.get_message(timeout=0.1)) is not None:
            lines.append(message["data"])
    quiet_until = time.monotonic() + 0.3
    while time.monotonic() < quiet_until:
        if (message := pubsub.get_message(timeout=0.1)) is not None:
            lines.append(message["data"])
    pubsub.close()
    return lines


OPTIONAL_GROUP = {
    "name": "label",
    "on": r"^ev/(?:(?P<label>[a-z]+)-)?(?P<n>\d+)$",
    "make": {"task": "job/${label}/${n}", "queue": "jobs"},
}


def test_a_poison_event_is_retried_across_batches_then_dead_lettered_with_its_reason(
    r: redis.Redis,
) -> None:
    router = Router(
        ruleset=one_watcher(OPTIONAL_GROUP, max_attempts=3),
        client=r,
        options=RouterOptions(batch_size=2),
    )
    r.lpush(DONE, "ev/7", "ev/a-1", "ev/b-2", "ev/c-3")  # ev/7 lacks the optional label
    router.run_until_idle()
    assert r.lrange("jobs", 0, -1) == [b"job/c/3", b"job/b/2", b"job/a/1"]
    [entry] = [json.loads(raw) for raw in r.lrange(f"{DONE}/dead", 0, -1)]
    assert entry["event"] == "ev/7"
    assert entry["rule"] == "label"
    assert entry["attempts"] == 3
    assert entry["error"] == "RuleError: variable 'label' has no value for this event"
    counters = stats(r, router.loops[0].keys)
    assert (counters["retried"], counters["dead"], counters["label|dead"]) == (2, 1, 1)
    assert counters["events"] == 6  # three takes of ev/7, in three batches
    assert r.exists(f"{DONE}/attempts") == 0


def test_a_retried_event_is_announced_done_once_when_it_is_finished(r: redis.Redis) -> None:
    ruleset = rules(
        {
            "listener_channel": "notes",
            "watchers": [{"input_queue": DONE, "max_attempts": 2, "rules": [OPTIONAL_GROUP]}],
        }
    )
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("notes")
    r.lpush(DONE, "ev/7")
    Router(ruleset=ruleset, client=r).run_until_idle()  # tried, sent back, dead-lettered
    assert published(pubsub, 1) == [f"{DONE}/taken DONE ev/7".encode()]


def test_an_event_that_fails_then_succeeds_starts_afresh_next_time(r: redis.Redis) -> None:
    calls: list[str] = []

    class Flaky:
        """An expander whose first call fails."""

        def prefetch(self, matches: Sequence[Match]) -> None:
            pass

        def __call__(self, match: Match) -> list[dict[str, str]]:
            calls.append(match.variables["input_task"])
            if len(calls) == 1:
                raise FetchError("503 from the catalogue")
            return [{**match.variables, "cat.v": "1"}]

    fetching = {
        "on": r"^doc/\d+$",
        "fetch": [{"url": "http://catalogue.invalid/", "returns": "cat"}],
        "make": {"task": "${input_task}/${cat.v}", "queue": "docs"},
    }
    router = Router(ruleset=one_watcher(fetching), client=r, expander=Flaky())
    r.lpush(DONE, "doc/1")
    router.run_until_idle()
    assert r.lrange("docs", 0, -1) == [b"doc/1/1"]
    assert r.exists(f"{DONE}/attempts") == 0  # its failed attempt is forgotten


def test_unmatched_events_are_counted_and_kept_when_configured(r: redis.Redis) -> None:
    router = Router(ruleset=one_watcher(*CHAIN, unmatched_queue="lost"), client=r)
    r.lpush(DONE, "nope/1", "acq/1", "nope/2")
    router.run_until_idle()
    assert stats(r, router.loops[0].keys)["unmatched"] == 2
    assert r.lrange("lost", 0, -1) == [b"nope/2", b"nope/1"]


def test_unmatched_events_are_only_counted_by_default(r: redis.Redis) -> None:
    router = Router(ruleset=one_watcher(*CHAIN), client=r)
    r.lpush(DONE, "nope/1")
    router.run_until_idle()
    assert stats(r, router.loops[0].keys)["unmatched"] == 1
    assert r.keys("*unmatched*") == []


def test_at_a_low_rate_a_round_makes_two_script_calls_per_event(r: redis.Redis) -> None:
    """One event at a time: the take behind the commit found the list empty, so the next
    round waits at once and leaves what may follow to the take behind its own commit (no
    take that would find the list empty again): per event, a blocking move, the commit
    and the take behind it."""
    ruleset = one_watcher(
        {"name": "r", "on": "^e/(?P<n>\\d+)$", "make": {"task": "t/${n}", "queue": "out"}}
    )
    router = Router(ruleset=ruleset, client=r)
    events = 20
    with running(router):
        r.lpush(DONE, "e/0")
        wait_for(lambda: r.llen("out") == 1, what="the first event routed")
        r.config_resetstat()
        for n in range(1, events + 1):
            r.lpush(DONE, f"e/{n}")
            wait_for(lambda n=n: r.llen("out") == n + 1, what=f"event {n} routed")
        stats_ = cast(dict[str, dict[str, int]], r.info("commandstats"))
    scripts = stats_["cmdstat_evalsha"]["calls"]
    moves = stats_["cmdstat_blmove"]["calls"]
    assert moves >= events
    assert scripts <= 2 * events + 5, f"{scripts} script calls for {events} events"

"""Per-rule counters of batches that touch many rules: written late, equal to the inline ones.

A batch whose events matched more than ``INLINE_RULES`` rules has its per-rule counters
returned by the commit script instead of written there (one ``HINCRBY`` per rule would
double the script's time with hundreds of rules); the router adds them up and writes
them once per second. These tests hold the two ways to the same figures.
"""

from __future__ import annotations

import threading

import redis

from resc_dramatiq import Config, Router, RouterOptions, RuleSet
from resc_dramatiq.rules.plan import Planner
from resc_dramatiq.store.keys import WatcherKeys
from resc_dramatiq.store.rule_counts import INLINE_RULES
from tests.helpers import wait_for

RULES = 20  # > INLINE_RULES: a batch of all of them is counted late


def ruleset(input_queue: str) -> RuleSet:
    rules = [
        {
            "name": f"r{i}",
            "on": rf"^r{i}/(?P<n>\d+)$",
            "make": {
                "task": f"t{i}/${{n}}",
                "queue": f"{input_queue}/todo",
                "set": f"{input_queue}/seen",
            },
        }
        for i in range(RULES)
    ]
    return RuleSet.compile(
        Config.from_data({"watchers": [{"input_queue": input_queue, "rules": rules}]})
    )


def events() -> list[str]:
    """Three events per rule, one of them a duplicate task (deduplicated)."""
    return [f"r{i}/{n}" for i in range(RULES) for n in (1, 2, 1)]


def per_rule(r: redis.Redis, input_queue: str) -> dict[bytes, bytes]:
    stats = r.hgetall(f"{input_queue}/stats")
    return {k: v for k, v in stats.items() if b"|" in k}


def route(r: redis.Redis, input_queue: str, *, batch_size: int) -> None:
    r.lpush(input_queue, *events())
    router = Router(
        ruleset=ruleset(input_queue), client=r, options=RouterOptions(batch_size=batch_size)
    )
    router.run_until_idle()


def test_a_batch_of_many_rules_counts_each_rule_as_batches_of_few_rules_do(r: redis.Redis) -> None:
    assert RULES > INLINE_RULES >= 1
    route(r, "few", batch_size=1)  # one rule per batch: counted by the commit script
    route(r, "many", batch_size=500)  # every rule in one batch: counted late
    few, many = per_rule(r, "few"), per_rule(r, "many")
    assert few == many
    assert few[b"r3|matched"] == b"3" and few[b"r3|queued"] == b"2"
    assert few[b"r3|deduplicated"] == b"1"


def test_the_commit_script_returns_the_counters_of_a_batch_it_leaves_to_the_router(
    r: redis.Redis,
) -> None:
    rules = ruleset("direct")
    router = Router(ruleset=rules, client=r)
    loop = router.loops[0]
    r.lpush("direct", *events())
    taken = loop.store.take(500)
    batch = Planner(rules.watchers[0]).plan(taken)
    result = loop.store.commit(batch).result()
    assert per_rule(r, "direct") == {}, "the script wrote per-rule counters itself"
    assert r.hget(WatcherKeys.of(rules.watchers[0].spec, router.instance).stats, "queued") == b"40"
    assert result.per_rule[f"r{RULES - 1}|queued"] == 2
    assert result.per_rule[f"r{RULES - 1}|deduplicated"] == 1


def test_counters_written_late_reach_redis_within_seconds_while_the_router_runs(
    r: redis.Redis,
) -> None:
    router = Router(ruleset=ruleset("live"), client=r, options=RouterOptions(block_s=0.1))
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    try:
        for _ in range(3):  # the first batch is not due for a flush: later ones are
            r.lpush("live", *events())
            wait_for(lambda: r.llen("live") == 0, what="events taken")
        wanted = {f"r{i}|matched".encode(): b"9" for i in range(RULES)}
        wait_for(
            lambda: wanted.items() <= per_rule(r, "live").items(),
            timeout_s=10,
            what="per-rule counters flushed while running",
        )
        assert thread.is_alive()
    finally:
        router.stop()
        thread.join(10)

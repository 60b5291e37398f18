"""Dramatiq's own dead-lettered messages: listed, requeued and dropped, on a real worker.

Each test dead-letters real messages: a real ``dramatiq.Worker`` on a ``RedisBroker``
over the session's Redis runs an actor that raises until a flag in Redis says otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq import WrongType
from resc_dramatiq.ops import dramatiq_dead
from resc_dramatiq.ops.dramatiq_dead import (
    ALL,
    Moved,
    drop_messages,
    list_dead_messages,
    requeue_messages,
)
from resc_dramatiq.store.keys import DramatiqKeys
from tests.helpers import dead_cli, running, wait_for

NS = "dramatiq"
KEYS = DramatiqKeys(NS)
QUEUE = "jobs"
FIXED = "test/fixed"  # set: the actor succeeds
DONE = "test/done"  # the args of each successful run

RULES = {
    "watchers": [
        {
            "input_queue": "in",
            "rules": [
                {"on": "^(?P<n>.*)$", "make": {"queue": QUEUE, "actor": "work"}},
                {"on": "^x(?P<n>.*)$", "make": {"queue": "jobs-${n}", "actor": "work"}},
            ],
        }
    ]
}


@pytest.fixture
def broker(r: redis.Redis) -> Iterator[RedisBroker]:
    """A broker on the test's Redis with the actor ``work`` on ``jobs`` (fast retries)."""
    b = RedisBroker(client=r)
    for m in b.middleware:
        if isinstance(m, Retries):
            m.min_backoff, m.max_backoff = 10, 20

    def work(n: int, *, tag: str = "") -> None:
        if not r.exists(FIXED):
            raise RuntimeError(f"broken {n}")
        r.rpush(DONE, f"{n}{tag}")

    dramatiq.actor(work, broker=b, actor_name="work", queue_name=QUEUE, max_retries=0)
    yield b


def kill(broker: RedisBroker, r: redis.Redis, *ns: int, max_retries: int = 0) -> list[str]:
    """Send ``work(n)`` for each ``n`` and wait until all are dead; their redis ids."""
    actor = broker.get_actor("work")
    dead = r.zcard(KEYS.dead(QUEUE)) + len(ns)
    for n in ns:
        actor.send_with_options(args=(n,), kwargs={"tag": "!"}, max_retries=max_retries)
    with running(broker):
        wait_for(lambda: r.zcard(KEYS.dead(QUEUE)) == dead, what="messages dead")
    return [m.redis_id for m in list_dead_messages(r, NS, QUEUE).messages]


# --- the library ------------------------------------------------------------------------


def test_dead_messages_are_listed_newest_first_with_actor_and_args(
    broker: RedisBroker, r: redis.Redis
) -> None:
    kill(broker, r, 1)
    kill(broker, r, 2)
    page = list_dead_messages(r, NS, QUEUE)
    assert page.size == 2 and page.next_offset is None
    assert [(m.actor, m.args, m.kwargs) for m in page.messages] == [
        ("work", (2,), {"tag": "!"}),
        ("work", (1,), {"tag": "!"}),
    ]
    first = page.messages[0]
    assert first.queue_name == QUEUE and first.message_id and first.dead_at_ms > 0
    assert first.payload == r.hget(KEYS.dead_messages(QUEUE), first.redis_id)


def test_a_listing_is_paginated_by_offset_and_limit(broker: RedisBroker, r: redis.Redis) -> None:
    kill(broker, r, 1, 2, 3)
    page = list_dead_messages(r, NS, QUEUE, limit=2)
    assert len(page.messages) == 2 and page.next_offset == 2
    rest = list_dead_messages(r, NS, QUEUE, offset=2, limit=2)
    assert len(rest.messages) == 1 and rest.next_offset is None


def test_a_retried_message_shows_the_last_line_of_its_traceback(
    broker: RedisBroker, r: redis.Redis
) -> None:
    kill(broker, r, 7, max_retries=1)
    (message,) = list_dead_messages(r, NS, QUEUE).messages
    assert message.error == "RuntimeError: broken 7"


def test_requeued_messages_leave_the_dead_set_and_a_fixed_actor_runs_them(
    broker: RedisBroker, r: redis.Redis
) -> None:
    ids = kill(broker, r, 1, 2)
    assert requeue_messages(r, NS, QUEUE, ids) == Moved(2, 0)
    assert r.zcard(KEYS.dead(QUEUE)) == 0 and r.hlen(KEYS.dead_messages(QUEUE)) == 0
    assert r.llen(KEYS.queue(QUEUE)) == 2 and r.hlen(KEYS.messages(QUEUE)) == 2
    r.set(FIXED, 1)
    with running(broker):
        wait_for(lambda: r.llen(DONE) == 2, what="requeued messages run")
    assert sorted(r.lrange(DONE, 0, -1)) == [b"1!", b"2!"]


def test_requeue_of_all_moves_every_message(broker: RedisBroker, r: redis.Redis) -> None:
    kill(broker, r, 1, 2, 3)
    assert requeue_messages(r, NS, QUEUE, ALL) == Moved(3, 0)
    assert r.zcard(KEYS.dead(QUEUE)) == 0 and r.llen(KEYS.queue(QUEUE)) == 3


def test_requeue_and_dry_run_of_all_go_through_every_group(
    broker: RedisBroker, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dramatiq_dead, "GROUP", 2)
    (good, *_) = kill(broker, r, 1, 2, 3, 4, 5)
    payload = json.loads(r.hget(KEYS.dead_messages(QUEUE), good) or b"")
    r.zadd(KEYS.dead(QUEUE), {"delayed": 1})  # the oldest, skipped by every pass
    r.hset(KEYS.dead_messages(QUEUE), "delayed", json.dumps({**payload, "queue_name": "jobs.DQ"}))
    assert requeue_messages(r, NS, QUEUE, ALL, dry_run=True) == Moved(5, 1)
    assert requeue_messages(r, NS, QUEUE, ALL) == Moved(5, 1)
    assert r.llen(KEYS.queue(QUEUE)) == 5 and r.zrange(KEYS.dead(QUEUE), 0, -1) == [b"delayed"]


def test_drop_removes_the_set_member_and_its_payload_and_enqueues_nothing(
    broker: RedisBroker, r: redis.Redis
) -> None:
    first, second = kill(broker, r, 1, 2)
    assert drop_messages(r, NS, QUEUE, [first]) == Moved(1, 0)
    assert r.zrange(KEYS.dead(QUEUE), 0, -1) == [second.encode()]
    assert r.hkeys(KEYS.dead_messages(QUEUE)) == [second.encode()]
    assert r.llen(KEYS.queue(QUEUE)) == 0


def test_a_dry_run_counts_and_changes_nothing(broker: RedisBroker, r: redis.Redis) -> None:
    ids = kill(broker, r, 1, 2)
    dead = r.zrange(KEYS.dead(QUEUE), 0, -1, withscores=True)
    assert requeue_messages(r, NS, QUEUE, ALL, dry_run=True) == Moved(2, 0)
    assert drop_messages(r, NS, QUEUE, ids, dry_run=True) == Moved(2, 0)
    assert r.zrange(KEYS.dead(QUEUE), 0, -1, withscores=True) == dead
    assert r.hlen(KEYS.dead_messages(QUEUE)) == 2 and not r.exists(KEYS.queue(QUEUE))


def test_concurrent_requeues_enqueue_each_message_exactly_once(
    broker: RedisBroker, r: redis.Redis
) -> None:
    ids = kill(broker, r, *range(6))
    results: list[Moved] = []
    barrier = threading.Barrier(4)

    def operator() -> None:
        barrier.wait()
        results.append(requeue_messages(r, NS, QUEUE, ids))

    threads = [threading.Thread(target=operator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(x.moved for x in results) == 6
    assert sorted(r.lrange(KEYS.queue(QUEUE), 0, -1)) == sorted(i.encode() for i in ids)
    assert r.zcard(KEYS.dead(QUEUE)) == 0


def test_a_payload_of_another_queue_is_skipped_and_left_dead(
    broker: RedisBroker, r: redis.Redis
) -> None:
    (good,) = kill(broker, r, 1)
    payload = json.loads(r.hget(KEYS.dead_messages(QUEUE), good) or b"")
    r.zadd(KEYS.dead(QUEUE), {"delayed": 1})  # nacked from the delay queue jobs.DQ
    r.hset(KEYS.dead_messages(QUEUE), "delayed", json.dumps({**payload, "queue_name": "jobs.DQ"}))
    assert requeue_messages(r, NS, QUEUE, ALL) == Moved(1, 1)
    assert r.zrange(KEYS.dead(QUEUE), 0, -1) == [b"delayed"]
    assert r.lrange(KEYS.queue(QUEUE), 0, -1) == [good.encode()]


def test_a_requeue_onto_a_queue_key_of_another_type_moves_nothing(
    broker: RedisBroker, r: redis.Redis
) -> None:
    ids = kill(broker, r, 1)
    r.set(KEYS.queue(QUEUE), "x")
    with pytest.raises(WrongType, match="dramatiq:jobs' holds a string, not a list"):
        requeue_messages(r, NS, QUEUE, ids)
    assert r.zcard(KEYS.dead(QUEUE)) == 1 and r.hlen(KEYS.dead_messages(QUEUE)) == 1


# --- the commands -----------------------------------------------------------------------


@pytest.fixture
def config_file(write_config: Callable[[str], Path]) -> Path:
    return write_config(json.dumps(RULES))


def test_dead_messages_lists_the_queues_the_rules_feed(
    broker: RedisBroker, r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    (redis_id,) = kill(broker, r, 5)
    result = dead_cli(redis_url, config_file, "messages")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "dramatiq:jobs.XQ: 1 dead messages, 1 shown"
    assert f"{redis_id}  work(5, tag='!')" in lines[1]


def test_dead_messages_json_gives_every_field(
    broker: RedisBroker, r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    (redis_id,) = kill(broker, r, 5)
    result = dead_cli(redis_url, config_file, "messages", "--json")
    assert result.exit_code == 0, result.output
    (queue,) = json.loads(result.stdout)
    assert queue["queue"] == QUEUE and queue["size"] == 1
    (message,) = queue["messages"]
    assert message["redis_id"] == redis_id and message["args"] == [5]


def test_dead_messages_requeue_and_drop_say_how_many(
    broker: RedisBroker, r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    first, second = kill(broker, r, 1, 2)
    result = dead_cli(redis_url, config_file, "messages-requeue", first)
    assert result.exit_code == 0, result.output
    assert result.stdout == "dramatiq:jobs.XQ: 1 requeued\n"
    result = dead_cli(redis_url, config_file, "messages-drop", "--all", "--dry-run")
    assert result.stdout == "dramatiq:jobs.XQ: 1 would be dropped\n"
    assert r.zrange(KEYS.dead(QUEUE), 0, -1) == [second.encode()]


def test_dead_messages_of_an_unknown_queue_exits_2_naming_the_known_ones(
    redis_url: str, config_file: Path
) -> None:
    result = dead_cli(redis_url, config_file, "messages", "--queue", "nope")
    assert result.exit_code == 2
    assert "--queue 'nope': no rule feeds it; known: 'jobs'" in result.output


def test_a_queue_of_a_templated_target_is_named_with_queue(
    redis_url: str, config_file: Path
) -> None:
    result = dead_cli(redis_url, config_file, "messages", "--queue", "jobs-7")
    assert result.exit_code == 0, result.output
    assert result.stdout == "dramatiq:jobs-7.XQ: 0 dead messages, 0 shown\n"


def test_requeue_needs_exactly_one_of_all_or_ids(redis_url: str, config_file: Path) -> None:
    result = dead_cli(redis_url, config_file, "messages-requeue")
    assert result.exit_code == 2
    assert "give exactly one of --all or REDIS_ID..." in result.output

"""The keyspace's layout version: recorded by the first router or worker, a layout this
release cannot read refused at start, and processes of one layout side by side.

The process of the other version is a frozen copy of layout 1's router (its scripts and
its codec, in ``tests/frozen_v1``), routing from the same input list as the current
:class:`Router` does.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from click.testing import CliRunner
from dramatiq.brokers.redis import RedisBroker

from resc_dramatiq import Completion, Config, LayoutRefused, Router, RouterOptions, RuleSet
from resc_dramatiq.cli import main
from resc_dramatiq.store.keys import LAYOUT_KEY
from resc_dramatiq.store.layout import MAX_STARTED, check_layout, package_version
from resc_dramatiq.worker.completion import BootRefused
from tests.frozen_v1.commit import Keys, Task
from tests.frozen_v1.router import FrozenRouter
from tests.helpers import wait_for
from tests.procs import CLI, own_redis, url_of

LAYOUT = "resc/layout"
IN = "in"
EVENT = re.compile(r"^acq/(?P<n>\d+)/(?P<k>\d+)$")
RULES = {
    "watchers": [
        {
            "input_queue": IN,
            "rules": [
                {
                    "name": "trt",
                    "on": EVENT.pattern,
                    "make": [
                        {"task": "trt/${n}", "queue": "trt", "set": "trt/set"},
                        {"task": "log/${n}/${k}", "queue": "log"},
                        {"actor": "thumbnail", "queue": "thumbs", "task": "thumb/${n}",
                         "set": "thumb/set"},
                    ],
                }
            ],
        }
    ]
}  # fmt: skip


@pytest.fixture(autouse=True)
def _close_extra_connections(r: redis.Redis) -> Iterator[None]:
    """Routers and worker threads open more connections on ``r``: close them after."""
    yield
    r.connection_pool.disconnect()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    return path


def a_future_layout(r: redis.Redis) -> None:
    """``resc/layout`` as a release writing layout 2 (reading 1 and 2) would leave it."""
    start = {"layout": 2, "reads": [1, 2], "at": int(time.time()), "by": "router z9"}
    r.hset(LAYOUT, mapping={"version": 2, "oldest": 1, "started/9.1.0": json.dumps(start)})


def the_router(r: redis.Redis, **options: Any) -> Router:
    ruleset = RuleSet.compile(Config.from_data(RULES))
    return Router(ruleset=ruleset, client=r, options=RouterOptions(**options))


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    """A RedisBroker with Completion and the ``thumbnail`` actor; one message waits."""
    b = RedisBroker(url=redis_url)
    b.add_middleware(Completion())

    @dramatiq.actor(broker=b, queue_name="thumbs")
    def thumbnail(n: str) -> None:
        pass

    thumbnail.send("1")
    yield b
    b.close()


# -- recorded at start ---------------------------------------------------------------


def test_a_router_starting_on_an_empty_redis_records_layout_1(r: redis.Redis) -> None:
    router = the_router(r)
    thread = threading.Thread(target=router.run)
    thread.start()
    try:
        wait_for(lambda: r.zscore("in/taken/instances", router.instance), what="registered")
    finally:
        router.stop()
        thread.join(timeout=20)
    assert r.hget(LAYOUT, "version") == b"1"
    assert r.hget(LAYOUT, "oldest") == b"1"
    start = json.loads(r.hget(LAYOUT, f"started/{package_version()}") or b"")
    assert start["layout"] == 1 and start["reads"] == [1, 1]
    assert start["by"] == f"router {router.instance}"


def test_a_worker_booting_on_an_empty_redis_records_layout_1(
    r: redis.Redis, broker: RedisBroker
) -> None:
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    worker.stop()
    assert r.hget(LAYOUT, "version") == b"1"
    start = json.loads(r.hget(LAYOUT, f"started/{package_version()}") or b"")
    assert start["by"] == "worker" and start["layout"] == 1


def test_the_layout_is_written_once_and_each_release_start_is_remembered_boundedly(
    r: redis.Redis,
) -> None:
    old = {"layout": 1, "reads": [1, 1], "by": "router x"}
    for i in range(MAX_STARTED + 4):  # releases started long ago, oldest first
        r.hset(LAYOUT, f"started/0.1.{i}", json.dumps({**old, "at": 1000 + i}))
    first = check_layout(r, "router a")
    again = check_layout(r, "router b")
    assert (first.version, again.version, again.oldest) == (1, 1, 1)
    fields = {f.decode() for f in r.hkeys(LAYOUT)}
    started = {f for f in fields if f.startswith("started/")}
    assert len(started) == MAX_STARTED
    assert f"started/{package_version()}" in started
    assert "started/0.1.0" not in started and f"started/0.1.{MAX_STARTED + 3}" in started


def test_status_shows_the_keyspace_layout(r: redis.Redis, redis_url: str, config: Path) -> None:
    def layout() -> Any:
        argv = ["status", str(config), "--redis-url", redis_url, "--json"]
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)[0]["layout"]

    assert layout() is None
    check_layout(r, "router a")
    assert layout() == 1


# -- refused at start ------------------------------------------------------------------


def test_the_router_command_refuses_a_layout_it_cannot_read_and_says_what_to_do(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    a_future_layout(r)
    r.lpush(IN, "acq/1/1", "acq/2/1")
    result = subprocess.run(
        [CLI, "router", str(config), "--redis-url", redis_url, "--instance", "a"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: router a (resc-dramatiq {package_version()}) reads layout 1")
    assert "Redis holds layouts 1 to 2" in error
    assert "resc-dramatiq 9.1.0 (layout 2, reads 1-2, router z9" in error
    assert "Upgrade this process to a release that reads layouts 1 to 2" in error
    assert '"Upgrading a running fleet"' in error
    assert r.llen(IN) == 2  # nothing taken
    assert r.zcard("in/taken/instances") == 0  # never registered
    assert r.hget(LAYOUT, "version") == b"2"
    assert r.hget(LAYOUT, f"started/{package_version()}") is None


def test_a_worker_boot_is_refused_on_a_layout_it_cannot_read(
    r: redis.Redis, broker: RedisBroker
) -> None:
    a_future_layout(r)
    worker = dramatiq.Worker(broker, worker_threads=1)
    with pytest.raises(BootRefused, match="reads layout 1, but Redis holds layouts 1 to 2"):
        worker.start()
    assert worker.workers == [] and worker.consumers == {}
    assert r.llen("dramatiq:thumbs") == 1  # the waiting message was not taken


@pytest.mark.parametrize(
    ("held", "said"),
    [
        ({"version": "two"}, "field 'version' holds 'two', not a layout number"),
        ({"version": "1", "oldest": "0"}, "Redis holds layouts 0 to 1"),
    ],
    ids=["not a number", "an older layout"],
)
def test_a_layout_record_this_release_cannot_read_refuses_the_start(
    r: redis.Redis, held: dict[str, str], said: str
) -> None:
    r.hset(LAYOUT, mapping=held)
    with pytest.raises(LayoutRefused, match=re.escape(said)):
        check_layout(r, "router a")


def test_a_layout_key_of_another_type_refuses_the_start(r: redis.Redis) -> None:
    r.set(LAYOUT, "1")
    with pytest.raises(LayoutRefused, match="key 'resc/layout' holds a string, not the hash"):
        check_layout(r, "worker")


# -- side by side -----------------------------------------------------------------------


def frozen_plan(events: Sequence[bytes]) -> list[Task]:
    """The old release's tasks for ``events``: RULES, planned the way layout 1 wrote them."""
    tasks: list[Task] = []
    for i, event in enumerate(events):
        m = EVENT.match(event.decode())
        assert m is not None
        n, k = m["n"], m["k"]
        tasks.append(Task(f"trt/{n}".encode(), "trt", "trt/set", i, "trt"))
        tasks.append(Task(f"log/{n}/{k}".encode(), "log", None, i, "trt"))
        message = dramatiq.Message(
            queue_name="thumbs",
            actor_name="thumbnail",
            args=(),
            kwargs={"n": n, "k": k},
            options={"redis_message_id": f"old-{n}-{k}",
                     "resc": {"task": f"thumb/{n}", "set": "thumb/set", "release": "taken",
                              "done": IN}},
        )  # fmt: skip
        tasks.append(
            Task(f"thumb/{n}".encode(), "thumbs", "thumb/set", i, "trt", f"old-{n}-{k}",
                 message.encode())
        )  # fmt: skip
    return tasks


def test_a_layout_1_router_of_the_release_before_and_the_current_one_route_side_by_side(
    r: redis.Redis,
) -> None:
    products, per_product = 150, 8  # each product's events are routed by either router
    events = [f"acq/{n}/{k}" for k in range(per_product) for n in range(products)]
    old = FrozenRouter(
        client=r, keys=Keys(input=IN, taken_base="in/taken", dead="in/dead", instance="old"),
        plan=frozen_plan, batch_size=20,
    )  # fmt: skip
    new = the_router(r, batch_size=20)
    stop_old = threading.Event()
    threads = [threading.Thread(target=old.run, args=(stop_old,)), threading.Thread(target=new.run)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: r.zcard("in/taken/instances") == 2, what="both routers registered")
        for i in range(0, len(events), 40):  # a producer: both routers wait for each chunk
            r.lpush(IN, *events[i : i + 40])
            wait_for(lambda: r.llen(IN) == 0, what="the chunk taken")
        wait_for(
            lambda: int(r.hget("in/stats", "events") or 0) == len(events), what="all committed"
        )
    finally:
        stop_old.set()
        new.stop()
        for thread in threads:
            thread.join(timeout=20)
    assert 0 < old.committed < len(events)  # each router routed its share
    assert r.llen(IN) == 0 and r.llen("in/taken/old") == 0
    assert r.llen(f"in/taken/{new.instance}") == 0
    assert r.hget(LAYOUT, "version") == b"1"
    trt = Counter(r.lrange("trt", 0, -1))
    assert trt == Counter(f"trt/{n}".encode() for n in range(products))  # once each
    assert Counter(r.lrange("log", 0, -1)) == Counter(
        e.replace("acq", "log").encode() for e in events
    )
    ids = r.lrange("dramatiq:thumbs", 0, -1)
    payloads = r.hmget("dramatiq:thumbs.msgs", ids)
    thumbs = Counter(json.loads(p or b"")["options"]["resc"]["task"] for p in payloads)
    assert thumbs == Counter(f"thumb/{n}" for n in range(products))
    assert len(set(ids)) == len(ids) == r.hlen("dramatiq:thumbs.msgs")
    stats = r.hgetall("in/stats")
    assert int(stats[b"queued"]) == len(events) + 2 * products
    assert int(stats[b"deduplicated"]) == 2 * products * (per_product - 1)


def test_a_router_starting_while_redis_is_away_waits_for_it_then_records_the_layout() -> None:
    with own_redis() as server:
        client = redis.Redis.from_url(url_of(server))
        server.stop()
        router = the_router(client)
        thread = threading.Thread(target=router.run)
        thread.start()
        try:
            wait_for(lambda: router.availability.down, what="the outage noticed")
            server.start()
            wait_for(lambda: client.zcard("in/taken/instances"), what="registered")
            assert client.hget(LAYOUT, "version") == b"1"
        finally:
            router.stop()
            thread.join(timeout=20)
        assert not thread.is_alive()
        client.close()


def test_a_release_reading_one_layout_is_named_with_that_one_layout(r: redis.Redis) -> None:
    Router(
        ruleset=RuleSet.compile(Config.from_data(RULES)), client=r, instance="a1"
    ).run_until_idle()
    r.hset(LAYOUT_KEY, "version", 2)  # a future release raised it
    with pytest.raises(LayoutRefused) as refused:
        check_layout(r, "router b2")
    assert "(layout 1, reads 1, router a1 on" in str(refused.value)

"""A done or failure list without a hash tag on a Redis Cluster is a configuration error,
found before a message is taken: the worker refuses to boot, ``check`` exits 2.

An event is written with its message's marker, in ``<list>/messages``, by one script: on
a cluster both keys must share a slot, which only a hash tag makes sure of. On a real
cluster (three primaries, three replicas), a real ``dramatiq.Worker``; a message for the
actor waits in its queue before the worker starts, so a worker that booted anyway would
run it.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from click.testing import CliRunner
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from redis.cluster import RedisCluster

from resc_dramatiq import Completion, connect
from resc_dramatiq.cli import main
from resc_dramatiq.worker.completion import BootRefused
from resc_dramatiq.worker.registry import registry
from tests.cluster import LocalCluster
from tests.helpers import running, wait_for

NS = "{dq}"


@pytest.fixture
def broker(cluster: LocalCluster, cluster_client: RedisCluster) -> Iterator[RedisBroker]:
    broker = RedisBroker(client=connect(cluster.url), namespace=NS)
    yield broker
    broker.close()
    registry.clear()


def refused_boot(broker: RedisBroker, cluster_client: RedisCluster, actor: Any) -> str:
    """Send one message to ``actor``, start a worker; the boot's refusal, as text."""
    actor.send("1")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    with pytest.raises(BootRefused) as refused:
        worker.start()
    assert worker.workers == [] and worker.consumers == {}
    assert cluster_client.llen(f"{NS}:{actor.queue_name}") == 1  # waits for a worker that can
    return str(refused.value)


def test_a_worker_with_a_done_list_without_a_hash_tag_refuses_to_boot_naming_the_list(
    broker: RedisBroker, cluster_client: RedisCluster
) -> None:
    broker.add_middleware(Completion(done_queue="plain/done"), before=Retries)

    @dramatiq.actor(queue_name="one", broker=broker, done_event="one/${n}")
    def one(n: str) -> None:
        raise AssertionError("a worker that refused to boot ran a message")

    refusal = refused_boot(broker, cluster_client, one)
    assert "Completion(done_queue=...), used by actor 'one'" in refusal
    assert "list 'plain/done'" in refusal
    assert "name it '{plain/done}'" in refusal
    assert cluster_client.llen("plain/done") == 0


def declare_with(broker: RedisBroker, case: str) -> Any:
    """Declare actor ``one`` whose lists include an untagged one, as ``case`` says."""
    done = "{w}/done"
    if case == "Completion(failed_queue=...)":
        broker.add_middleware(Completion(done_queue=done, failed_queue="plain/f"), before=Retries)
    else:
        broker.add_middleware(Completion(done_queue=done), before=Retries)
    options: dict[str, Any] = {"done_event": "one/${n}"}
    if case.startswith("actor 'one' option"):
        options[case.rsplit(" ", 1)[1]] = "plain/f"

    def one(n: str) -> None:
        raise AssertionError("a worker that refused to boot ran a message")

    if case == "@on_done":
        registry.on_done(r"^zero/(?P<n>\d+)$", watcher="plain/f")(one)
    return dramatiq.actor(queue_name="one", broker=broker, **options)(one)


@pytest.mark.parametrize(
    "case",
    [
        "Completion(failed_queue=...)",
        "actor 'one' option done_queue",
        "actor 'one' option failed_queue",
        "@on_done",
    ],
)
def test_every_list_a_worker_writes_to_is_checked_at_boot(
    broker: RedisBroker, cluster_client: RedisCluster, case: str
) -> None:
    refusal = refused_boot(broker, cluster_client, declare_with(broker, case))
    assert case in refusal
    assert "list 'plain/f'" in refusal and "'{plain/f}'" in refusal


def test_a_worker_whose_lists_have_hash_tags_boots_and_writes_the_event(
    broker: RedisBroker, cluster_client: RedisCluster
) -> None:
    broker.add_middleware(Completion(done_queue="{w}/done"), before=Retries)

    @dramatiq.actor(queue_name="one", broker=broker, done_event="one/${n}", failed_queue="{w}/f")
    def one(n: str) -> None:
        pass

    one.send("1")
    assert done_events(broker, cluster_client) == [b"one/1"]


def test_the_default_done_list_unused_by_any_actor_does_not_stop_the_boot(
    broker: RedisBroker, cluster_client: RedisCluster
) -> None:
    """Rule-made messages name their own done list (the router's watcher, tagged):
    ``global/done`` is written only for actors declaring ``done_event``."""
    broker.add_middleware(Completion(), before=Retries)

    @dramatiq.actor(queue_name="one", broker=broker)
    def one(n: str) -> None:
        pass

    message = {"task": "one/1", "set": None, "release": "taken", "done": "{w}/done"}
    one.send_with_options(args=("1",), resc=message)
    assert done_events(broker, cluster_client) == [b"one/1"]


APP = """
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from resc_dramatiq import Completion, Registry, connect

broker = RedisBroker(client=connect({url!r}), namespace="{{dq}}")
broker.add_middleware(Completion(done_queue={done!r}), before=Retries)
rules = Registry()

@rules.on_done(r"^one/(?P<n>\\d+)$", watcher="{{w}}/done")
@dramatiq.actor(broker=broker, queue_name="two")
def two(n):
    pass

@dramatiq.actor(broker=broker, queue_name="one", done_event="one/${{n}}")
def one(n):
    pass
"""


@pytest.fixture
def write_app(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], str]:
    """An app module whose broker is on the cluster, its Completion's done list ``done``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)

    def write(done: str) -> str:
        name = f"app_{uuid.uuid4().hex[:8]}"
        text = APP.format(url=cluster.url, done=done)
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        return f"{name}:broker"

    return write


def test_check_reports_a_done_list_without_a_hash_tag_and_exits_2(
    write_app: Callable[[str], str], cluster_client: RedisCluster
) -> None:
    result = CliRunner().invoke(main, ["check", "--app", write_app("plain/done")])
    assert result.exit_code == 2, result.output
    assert "on a Redis Cluster the workers cannot write these lists" in result.stderr
    assert "list 'plain/done'" in result.stderr and "'{plain/done}'" in result.stderr
    tagged = CliRunner().invoke(main, ["check", "--app", write_app("{w}/done")])
    assert tagged.exit_code == 0, tagged.output


def done_events(broker: RedisBroker, cluster_client: RedisCluster) -> list[bytes]:
    """The done list ``{w}/done`` once a real worker on ``broker`` wrote to it."""
    with running(broker):
        return wait_for(lambda: cluster_client.lrange("{w}/done", 0, -1), what="the done event")

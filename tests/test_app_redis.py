"""``--app module:broker`` means the app's Redis: its server and its Dramatiq namespace.

Precedence: ``--redis-url`` > a ``redis.url`` the config file gives > the app broker's
Redis > the default. The routers here are real subprocesses given no ``--redis-url``
(and no ``RESC_REDIS_URL``) unless the test says otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from resc_dramatiq.cli import main
from resc_dramatiq.cli.common import load
from resc_dramatiq.cli.servers import namespace_for, servers_for
from resc_dramatiq.config.model import DEFAULT_REDIS_URL
from resc_dramatiq.rules.batch import FailedEvent
from resc_dramatiq.store.commit import dead_letter_entry
from resc_dramatiq.worker.registry import registry
from tests.helpers import wait_for
from tests.procs import CLI, DONE, LoggedProcess, free_port

APP = """
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from resc_dramatiq.worker.completion import Completion
from resc_dramatiq.worker.registry import on_done

broker = RedisBroker(url={url!r}, namespace={namespace!r})
broker.add_middleware(Completion(), before=Retries)


@on_done(r"^acq/(?P<n>\\d+)$")
@dramatiq.actor(broker=broker, queue_name="treat")
def treat(n):
    pass
"""

STUB_APP = """
import dramatiq
from dramatiq.brokers.stub import StubBroker
from resc_dramatiq.worker.registry import Registry

broker = StubBroker()
rules = Registry()


@rules.on_done(r"^acq/(?P<n>\\d+)$")
@dramatiq.actor(broker=broker, queue_name="treat")
def treat(n):
    pass
"""

WriteApp = Callable[..., str]


@pytest.fixture
def write_app(tmp_path: Path) -> WriteApp:
    """Write an app module into tmp_path; return ``module:broker``."""

    def write(url: str, *, namespace: str = "dramatiq", text: str = APP) -> str:
        name = f"shop_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(
            textwrap.dedent(text.format(url=url, namespace=namespace))
        )
        return f"{name}:broker"

    return write


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Apps imported by this process come from tmp_path; the default registry is restored."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield
    registry.clear()


@pytest.fixture
def unused_url() -> str:
    """A Redis URL nobody listens on (a password, to see it masked)."""
    return f"redis://:s3cret@127.0.0.1:{free_port()}/0"


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[Callable[..., LoggedProcess]]:
    """Start ``resc-dramatiq router ARGS`` in tmp_path; every one is stopped afterwards."""
    started: list[LoggedProcess] = []
    env = {k: v for k, v in os.environ.items() if k != "RESC_REDIS_URL"}

    def start(*args: str) -> LoggedProcess:
        log = tmp_path / f"router-{len(started)}.log"
        process = LoggedProcess([CLI, "router", *args], log=log, cwd=tmp_path, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def message_in(r: redis.Redis, namespace: str, queue: str = "treat") -> dict[str, object]:
    """The one Dramatiq message on ``namespace:queue`` (waits for it, bounded)."""
    wait_for(lambda: r.llen(f"{namespace}:{queue}") == 1, what=f"a message on {namespace}:{queue}")
    [message_id] = r.lrange(f"{namespace}:{queue}", 0, -1)
    payload: dict[str, object] = json.loads(r.hget(f"{namespace}:{queue}.msgs", message_id) or b"")
    return payload


def write_config(tmp_path: Path, url: str, **more: object) -> Path:
    path = tmp_path / "pipeline.json"
    rule = {"on": r"^acq/(?P<n>\d+)$", "make": {"task": "log/${n}", "queue": "log"}}
    path.write_text(
        json.dumps(
            {"redis": {"url": url}, "watchers": [{"input_queue": "other", "rules": [rule]}], **more}
        )
    )
    return path


def test_the_router_routes_into_the_redis_of_the_app_broker(
    write_app: WriteApp, start_router: Callable[..., LoggedProcess], redis_url: str, r: redis.Redis
) -> None:
    router = start_router("--app", write_app(redis_url))
    r.lpush(DONE, "acq/7")
    payload = message_in(r, "dramatiq")
    assert (payload["actor_name"], payload["kwargs"]) == ("treat", {"n": "7"})
    assert router.signal(signal.SIGTERM) == 0, router.output()
    assert "warning" not in router.output()


def test_the_router_writes_into_the_namespace_of_the_app_broker(
    write_app: WriteApp, start_router: Callable[..., LoggedProcess], redis_url: str, r: redis.Redis
) -> None:
    router = start_router("--app", write_app(redis_url, namespace="shop"))
    r.lpush(DONE, "acq/7")
    assert message_in(r, "shop")["actor_name"] == "treat"
    assert router.signal(signal.SIGTERM) == 0, router.output()
    assert r.exists("dramatiq:treat") == 0


def test_a_config_naming_another_redis_wins_and_says_so(
    write_app: WriteApp,
    start_router: Callable[..., LoggedProcess],
    redis_url: str,
    r: redis.Redis,
    unused_url: str,
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, redis_url)
    router = start_router(str(config), "--app", write_app(unused_url))
    r.lpush(DONE, "acq/7")
    assert message_in(r, "dramatiq")["actor_name"] == "treat"
    assert router.signal(signal.SIGTERM) == 0, router.output()
    [warning] = [line for line in router.output().splitlines() if line.startswith("warning:")]
    assert redis_url in warning
    assert unused_url.replace("s3cret", "***") in warning
    assert f"using {redis_url}" in warning
    assert "s3cret" not in router.output()


def test_the_redis_url_option_wins_over_the_app_broker(
    write_app: WriteApp,
    start_router: Callable[..., LoggedProcess],
    redis_url: str,
    r: redis.Redis,
    unused_url: str,
) -> None:
    router = start_router("--app", write_app(unused_url), "--redis-url", redis_url)
    r.lpush(DONE, "acq/7")
    assert message_in(r, "dramatiq")["actor_name"] == "treat"
    assert router.signal(signal.SIGTERM) == 0, router.output()
    assert "warning" not in router.output()


def test_status_reads_the_redis_and_namespace_of_the_app_broker(
    write_app: WriteApp, redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    r.lpush("shop:treat", "message-1")
    r.lpush("dramatiq:treat", "message-2", "message-3")  # the default namespace: not read
    app = write_app(redis_url, namespace="shop")
    env = {k: v for k, v in os.environ.items() if k != "RESC_REDIS_URL"}
    result = subprocess.run(
        [CLI, "status", "--app", app, "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    [watcher] = json.loads(result.stdout)
    assert watcher["redis"] == redis_url
    assert {t["key"]: t["depth"] for t in watcher["targets"]} == {"treat": 1}


@pytest.mark.usefixtures("here")
def test_an_app_without_a_redis_broker_falls_back_to_the_default_and_says_so(
    write_app: WriteApp, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = load(None, write_app("", text=STUB_APP))
    assert [s.url for s in servers_for(loaded, None)] == [DEFAULT_REDIS_URL]
    assert namespace_for(loaded) is None
    err = capsys.readouterr().err
    assert "StubBroker, not a RedisBroker" in err
    assert f"using {DEFAULT_REDIS_URL}" in err


@pytest.mark.usefixtures("here")
def test_a_namespace_the_config_names_wins_over_the_broker_and_says_so(
    write_app: WriteApp, tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_url: str
) -> None:
    config = write_config(tmp_path, unused_url, namespace="jobs")
    loaded = load(str(config), write_app(unused_url, namespace="shop"))
    assert namespace_for(loaded) == "jobs"
    assert "namespace 'jobs' differs from that of --app" in capsys.readouterr().err


@pytest.mark.usefixtures("here")
@pytest.mark.parametrize("verb", ["requeue", "drop"])
def test_dead_requeue_and_drop_with_app_take_a_first_argument_that_is_no_file_as_an_event(
    write_app: WriteApp, redis_url: str, r: redis.Redis, verb: str
) -> None:
    spec = write_app(redis_url)
    for event in (b"published/v1", b"published/v2"):
        failed = FailedEvent(event=event, rule="r", error="RuleError: boom")
        r.lpush(f"{DONE}/dead", dead_letter_entry(failed, watcher=DONE, attempts=1, at_s=1))
    result = CliRunner().invoke(main, ["dead", verb, "--app", spec, "published/v1"])
    assert result.exit_code == 0, result.output
    assert result.output == f"{DONE}/dead: 1 {'requeued' if verb == 'requeue' else 'dropped'}\n"
    assert r.llen(f"{DONE}/dead") == 1
    assert r.lrange(DONE, 0, -1) == ([b"published/v1"] if verb == "requeue" else [])


@pytest.mark.usefixtures("here")
def test_dead_messages_requeue_with_app_takes_a_first_argument_that_is_no_file_as_an_id(
    write_app: WriteApp, redis_url: str, r: redis.Redis
) -> None:
    spec = write_app(redis_url)
    result = CliRunner().invoke(
        main, ["dead", "messages-requeue", "--app", spec, "4c0f", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "dramatiq:treat.XQ: 0 would be requeued" in result.output

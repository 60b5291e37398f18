"""``--app module[:attr]``: import an app as dramatiq does, merge its code rules, check targets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import ConfigError
from resc_dramatiq.worker.app import build_ruleset, load_app
from resc_dramatiq.worker.completion import has_completion
from resc_dramatiq.worker.registry import registry
from tests.helpers import tasks_of

UNUSED_URL = "redis://127.0.0.1:1/0"  # check and explain never connect
CLUSTER_URL = "redis+cluster://127.0.0.1:7000"  # nor to a cluster

APP = """
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries
from resc_dramatiq.worker.completion import Completion
from resc_dramatiq.worker.registry import Registry

broker = RedisBroker(url={url!r})
{completion}broker.add_middleware(Completion(), before=Retries)
rules = Registry()

ACQ = r"^acq/(?P<process_id>\\d+)/(?P<product_id>\\d+)$"

@rules.on_done(ACQ, set="products/${{product_id}}/todo")
@dramatiq.actor(broker=broker, queue_name="treatments")
def treat(process_id, product_id):
    pass

@dramatiq.actor(broker=broker, queue_name="reports")
def report(product_id):
    pass
"""

CONFIG = {
    "watchers": [
        {
            "input_queue": "global/done",
            "rules": [
                {
                    "name": "report",
                    "on": r"^treat/\d+/(?P<product_id>\d+)$",
                    "make": {"actor": "report"},
                }
            ],
        }
    ]
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Apps live in tmp_path; sys.path and the default registry are restored."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield
    registry.clear()


@pytest.fixture
def write_app(tmp_path: Path) -> Callable[..., str]:
    def write(text: str = APP, *, url: str = UNUSED_URL, completion: bool = True) -> str:
        name = f"app_{uuid.uuid4().hex[:8]}"
        body = text.format(url=url, completion="" if completion else "# ")
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
        return name

    return write


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(CONFIG))
    return path


def test_the_broker_attribute_and_the_actor_queues_are_found(write_app: Callable[..., str]) -> None:
    app = load_app(f"{write_app()}:broker")
    assert app.actor_queues == {"treat": "treatments", "report": "reports"}
    assert [b.actor_name for b in app.rules] == ["treat"]
    assert has_completion(app.broker)


def test_without_an_attribute_the_global_broker_is_used(write_app: Callable[..., str]) -> None:
    name = write_app(APP + "\ndramatiq.set_broker(broker)\n")
    assert load_app(name).actor_queues["treat"] == "treatments"


def test_a_module_that_cannot_be_imported_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot import 'no_such_app_module'"):
        load_app("no_such_app_module")


def test_a_missing_broker_attribute_is_a_config_error(write_app: Callable[..., str]) -> None:
    with pytest.raises(ConfigError, match="has no 'brokr'"):
        load_app(f"{write_app()}:brokr")


def test_code_rules_join_the_file_watcher_after_its_rules(
    write_app: Callable[..., str], config_file: Path
) -> None:
    ruleset = build_ruleset(Config.load(config_file), load_app(f"{write_app()}:broker"))
    [watcher] = ruleset.watchers
    assert [r.name for r in watcher.rules] == ["report", "@on_done treat"]
    [task] = tasks_of(watcher, "acq/1/2")
    assert (task.task, task.queue, task.set, task.actor) == (
        "treat/1/2",
        "treatments",
        "products/2/todo",
        "treat",
    )


def test_code_rules_alone_make_their_own_watcher(write_app: Callable[..., str]) -> None:
    ruleset = build_ruleset(None, load_app(f"{write_app()}:broker"))
    assert [w.spec.input_queue for w in ruleset.watchers] == ["global/done"]


def test_file_rules_get_the_queue_of_their_actor(
    write_app: Callable[..., str], config_file: Path
) -> None:
    ruleset = build_ruleset(Config.load(config_file), load_app(f"{write_app()}:broker"))
    [task] = tasks_of(ruleset.watchers[0], "treat/1/2")
    assert (task.actor, task.queue) == ("report", "reports")


def test_a_file_actor_the_app_lacks_is_refused(
    write_app: Callable[..., str], tmp_path: Path
) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["watchers"][0]["rules"][0]["make"]["actor"] = "reprt"
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="unknown actor 'reprt' \\(did you mean 'report'\\?\\)"):
        build_ruleset(Config.load(path), load_app(f"{write_app()}:broker"))


def test_a_decorated_function_that_is_no_actor_is_refused(write_app: Callable[..., str]) -> None:
    text = APP + "\n@rules.on_done(r'^x/(?P<a>\\\\d+)$')\ndef orphan(a):\n    pass\n"
    with pytest.raises(ConfigError, match="orphan: the function is no actor"):
        load_app(f"{write_app(text)}:broker")


def test_check_lists_the_code_rules_of_the_app(write_app: Callable[..., str]) -> None:
    result = CliRunner().invoke(main, ["check", "--app", f"{write_app()}:broker"])
    assert result.exit_code == 0, result.output
    assert "rule '@on_done treat'" in result.output
    assert "treat/${process_id}/${product_id} -> actor treat treatments" in result.output


def test_check_warns_when_the_broker_has_no_completion(write_app: Callable[..., str]) -> None:
    result = CliRunner().invoke(main, ["check", "--app", f"{write_app(completion=False)}:broker"])
    assert result.exit_code == 0
    assert "no Completion middleware" in result.output


def test_check_refuses_lists_the_workers_cannot_write_on_a_cluster_and_exits_2(
    write_app: Callable[..., str],
) -> None:
    text = APP.replace("Completion()", "Completion(failed_queue='plain/failed')")
    text = text.replace('set="products/${{product_id}}/todo"', 'watcher="{{g}}/in"')
    text = text.replace("RedisBroker(url={url!r})", "RedisBroker(url={url!r}, namespace='{{g}}')")
    app = f"{write_app(text)}:broker"
    result = CliRunner().invoke(main, ["check", "--app", app, "--redis-url", CLUSTER_URL])
    assert result.exit_code == 2, result.output
    assert "on a Redis Cluster the workers cannot write these lists" in result.stderr
    assert "Completion(failed_queue=...): list 'plain/failed'" in result.stderr
    assert "'{plain/failed}'" in result.stderr
    single = CliRunner().invoke(main, ["check", "--app", app])  # its broker: one server
    assert single.exit_code == 0, single.output


def test_check_without_config_nor_code_rules_exits_2() -> None:
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 2
    assert "no rules" in result.output


def test_explain_takes_events_without_a_config_when_given_an_app(
    write_app: Callable[..., str],
) -> None:
    result = CliRunner().invoke(main, ["explain", "--app", f"{write_app()}:broker", "acq/1/2"])
    assert result.exit_code == 0, result.output
    assert "-> task 'treat/1/2' to actor 'treat' on queue 'treatments'" in result.output


def test_explain_merges_the_config_file_and_the_app(
    write_app: Callable[..., str], config_file: Path
) -> None:
    args = ["explain", str(config_file), "treat/1/2", "--app", f"{write_app()}:broker"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "actor 'report' on queue 'reports'" in result.output


def test_the_router_routes_the_code_rules_of_the_app(
    write_app: Callable[..., str], redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    app = f"{write_app(url=redis_url)}:broker"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cmd = [sys.executable, "-m", "resc_dramatiq", "router", "--app", app, "--redis-url", redis_url]
    router = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        r.lpush("global/done", "acq/1/2")
        deadline = time.monotonic() + 15
        while r.llen("dramatiq:treatments") == 0 and time.monotonic() < deadline:
            assert router.poll() is None, router.stderr.read() if router.stderr else ""
            time.sleep(0.05)
    finally:
        router.send_signal(signal.SIGTERM)
        _, stderr = router.communicate(timeout=15)
    assert router.returncode == 0, stderr
    [message_id] = r.lrange("dramatiq:treatments", 0, -1)
    payload = json.loads(r.hget("dramatiq:treatments.msgs", message_id) or b"")
    assert payload["actor_name"] == "treat"
    assert payload["kwargs"] == {"process_id": "1", "product_id": "2"}
    assert r.zscore("products/2/todo", "treat/1/2") is not None

"""``--app django``: a Django project with django_dramatiq (``tests/django_project``: the
settings build a RedisBroker with Completion before Retries; the app ``media`` holds two
actors and an ``@on_done`` rule in its ``tasks.py``).

Django can be set up once per process, so every Django process here is a real subprocess
in the project's directory: the commands, the ``dramatiq`` worker as django_dramatiq runs
it (``dramatiq django_dramatiq.setup media.tasks``), the router, and the sender.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import wait_for
from tests.procs import CLI, LoggedProcess

PROJECT = Path(__file__).parent / "django_project"
DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")
RUNS = "media/runs"  # media.tasks.RUNS

Env = dict[str, str]


@pytest.fixture
def env(redis_url: str) -> Env:
    """The project's environment: its settings, its broker on the test's Redis."""
    base = {k: v for k, v in os.environ.items() if k not in ("RESC_REDIS_URL", "PYTHONPATH")}
    return base | {"REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "mysite.settings"}


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """``resc-dramatiq ARGS`` in the project's directory."""
    return subprocess.run(
        [CLI, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def start(tmp_path: Path, env: Env) -> Iterator[Callable[..., LoggedProcess]]:
    """Start a process in the project's directory; every one is stopped afterwards."""
    started: list[LoggedProcess] = []

    def run(name: str, *args: str) -> LoggedProcess:
        process = LoggedProcess(list(args), log=tmp_path / f"{name}.log", cwd=PROJECT, env=env)
        started.append(process)
        return process

    yield run
    for process in reversed(started):
        process.stop()


def test_check_app_django_lists_the_on_done_rule_of_an_installed_app(env: Env) -> None:
    result = cli(env, "check", "--app", "django")
    assert result.returncode == 0, result.stderr
    assert "rule '@on_done thumbnail' on /^uploaded/(?P<video_id>\\d+)$/" in result.stdout
    assert "thumbnail/${video_id} -> actor thumbnail thumbs" in result.stdout


def test_app_django_names_its_settings_without_the_environment_variable(env: Env) -> None:
    del env["DJANGO_SETTINGS_MODULE"]
    result = cli(env, "check", "--app", "django:mysite.settings")
    assert result.returncode == 0, result.stderr
    assert "@on_done thumbnail" in result.stdout


def test_app_django_without_settings_says_how_to_name_them(env: Env) -> None:
    del env["DJANGO_SETTINGS_MODULE"]
    result = cli(env, "check", "--app", "django")
    assert result.returncode == 2
    assert "--app 'django': which settings? Set DJANGO_SETTINGS_MODULE" in result.stderr


def test_app_django_with_settings_that_do_not_import_names_them(env: Env) -> None:
    result = cli(env, "check", "--app", "django:mysite.nosuch")
    assert result.returncode == 2
    assert "cannot import the settings 'mysite.nosuch': No module named" in result.stderr


def test_app_django_whose_broker_lacks_completion_says_where_it_belongs(env: Env) -> None:
    result = cli(env, "check", "--app", "django:mysite.settings_plain")
    assert result.returncode == 2
    assert "the broker 'mysite.settings_plain' builds has no Completion" in result.stderr
    assert 'to DRAMATIQ_BROKER["MIDDLEWARE"] before "dramatiq.middleware.Retries"' in (
        result.stderr
    )


def test_app_django_without_django_installed_says_so(env: Env) -> None:
    no_django = (
        "import sys; sys.modules['django'] = None; from resc_dramatiq.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", no_django, "check", "--app", "django"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--app 'django': Django is not installed" in result.stderr


def test_a_tasks_module_alone_points_to_app_django(env: Env) -> None:
    result = cli(env, "check", "--app", "media.tasks")
    assert result.returncode == 2
    assert "(a Django project? --app django sets it up first)" in result.stderr


def test_the_django_worker_and_router_run_the_chain_once(
    env: Env, start: Callable[..., LoggedProcess], r: redis.Redis
) -> None:
    router = start("router", CLI, "router", "--app", "django")
    worker = start("worker", DRAMATIQ, "django_dramatiq.setup", "media.tasks", "--processes", "1")
    send(env, 3)
    # transcode's done events matched the rule; thumbnail's own matched none: all routed
    wait_for(
        lambda: r.hget("global/done/stats", "unmatched") == b"3",
        timeout_s=60,
        what=f"the chain routed; worker: {worker.output()[-2000:]} router: {router.output()}",
    )
    worker.stop()  # graceful: what it held is done or back on its queue
    assert_ran_once(r, 3)


def test_a_django_worker_with_completion_routing_inline_runs_the_chain_once(
    env: Env, start: Callable[..., LoggedProcess], r: redis.Redis
) -> None:
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings_inline"
    worker = start("worker", DRAMATIQ, "django_dramatiq.setup", "media.tasks", "--processes", "1")
    send(env, 3)
    wait_for(
        lambda: r.hlen(RUNS) == 6,
        timeout_s=60,
        what=f"the chain routed in the worker: {worker.output()[-2000:]}",
    )
    worker.stop()
    # thumbnail's own done events match no rule: not written, counted as it stopped
    assert r.hget("global/done/stats", "leaf") == b"3"
    assert_ran_once(r, 3)


def send(env: Env, count: int) -> None:
    """Send ``transcode`` ``count`` times from a Django process of the project."""
    code = "import django; django.setup(); from media.tasks import transcode\n"
    code += f"for n in range({count}): transcode.send(n)"
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, check=True, timeout=60)


def assert_ran_once(r: redis.Redis, count: int) -> None:
    """Each stage ran once per video; nothing left on a queue or the done list."""
    assert r.llen("dramatiq:media") == r.llen("dramatiq:thumbs") == r.llen("global/done") == 0
    runs = {k.decode(): int(v) for k, v in r.hgetall(RUNS).items()}
    assert runs == {
        **{f"transcode/{n}": 1 for n in range(count)},
        **{f"thumbnail/{n}": 1 for n in range(count)},
    }

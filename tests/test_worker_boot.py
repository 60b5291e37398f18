"""A worker never runs with rules it could not load: the ``dramatiq`` command, on a real
Redis, exits non-zero with the error before it takes a message.

The app is ``tests/boot_app.py`` (``Completion`` routing inline); a message for its actor
waits in the queue before the worker starts, so a worker that boots anyway would run it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from resc_dramatiq.worker.completion import BootRefused, Completion
from tests.helpers import running, wait_for
from tests.procs import LoggedProcess

ROOT = Path(__file__).parent.parent
DONE = "global/done"
QUEUE, RUNS = "thumbs", "boot/runs"  # the actor's queue and run counts in tests/boot_app.py


def rules_naming(actor: str) -> dict[str, object]:
    make = {"actor": actor, "queue": QUEUE, "task": "thumb/${n}"}
    rule = {"name": "thumbnails", "on": r"^upload/(?P<n>\d+)$", "make": make}
    return {"watchers": [{"input_queue": DONE, "rules": [rule]}]}


def queue_a_message(redis_url: str) -> None:
    """One ``thumbnail`` message as the router writes it (its done event ``thumb/1``)."""
    broker = RedisBroker(url=redis_url)
    message = dramatiq.Message(
        queue_name=QUEUE,
        actor_name="thumbnail",
        args=("1",),
        kwargs={},
        options={"resc": {"task": "thumb/1", "set": None, "release": "taken", "done": DONE}},
    )
    broker.enqueue(message)
    broker.close()


def dramatiq_worker(redis_url: str, log: Path, **env: str) -> LoggedProcess:
    """``dramatiq tests.boot_app`` (one process, one thread) with ``env`` added."""
    argv = [sys.executable, "-m", "dramatiq", "tests.boot_app", "--path", str(ROOT)]
    argv += ["--processes", "1", "--threads", "1"]
    environment = {**os.environ, "REDIS_URL": redis_url, **env}
    return LoggedProcess(argv, log=log, env=environment, cwd=ROOT, start_new_session=True)


def boot_refused(worker: LoggedProcess, r: redis.Redis) -> str:
    """Wait until the worker exits (or, wrongly, runs the message); its output."""
    try:
        wait_for(
            lambda: worker.proc.poll() is not None or r.hlen(RUNS),
            timeout_s=60,
            poll_s=0.05,
            what="the worker exits",
        )
        assert r.hlen(RUNS) == 0, f"the worker ran the message:\n{worker.output()}"
        assert worker.proc.returncode != 0, worker.output()
        assert r.llen(f"dramatiq:{QUEUE}") == 1  # the message waits for a worker that can
        assert r.llen(DONE) == 0
        return worker.output()
    finally:
        if worker.proc.poll() is None:
            os.killpg(worker.proc.pid, signal.SIGKILL)


def test_a_rules_file_naming_an_unknown_actor_stops_the_dramatiq_worker_at_boot(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    rules = tmp_path / "bad.hjson"
    rules.write_text(json.dumps(rules_naming("thumbnal")))
    queue_a_message(redis_url)
    worker = dramatiq_worker(redis_url, tmp_path / "worker.log", BOOT_RULES=str(rules))
    output = boot_refused(worker, r)
    assert "Worker boot refused" in output
    assert "unknown actor 'thumbnal'" in output
    assert str(rules) in output  # where
    assert "Worker process is ready for action" not in output


def test_a_code_rule_that_does_not_compile_stops_the_dramatiq_worker_at_boot(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    queue_a_message(redis_url)
    worker = dramatiq_worker(redis_url, tmp_path / "worker.log", BOOT_CODE_RULE="bad")
    output = boot_refused(worker, r)
    assert "@on_done('^acq/(?P<n>\\\\d+)$') on tests.boot_app.thumbnail" in output
    assert "delay_ms" in output


def test_a_worker_whose_rules_load_boots_and_runs_the_waiting_message(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    rules = tmp_path / "good.hjson"
    rules.write_text(json.dumps(rules_naming("thumbnail")))
    queue_a_message(redis_url)
    worker = dramatiq_worker(redis_url, tmp_path / "worker.log", BOOT_RULES=str(rules))
    try:
        wait_for(lambda: r.hget(RUNS, "1"), timeout_s=60, what="the message ran")
        # its done event, thumb/1, matches no rule: handled inline, not written, a leaf
        wait_for(lambda: r.hget(f"{DONE}/stats", "leaf"), what="its done event handled inline")
    finally:
        code = worker.signal(signal.SIGTERM)
    assert code == 0, worker.output()


def test_worker_start_raises_when_the_rules_do_not_compile(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "bad.hjson"
    rules.write_text(json.dumps(rules_naming("thumbnal")))
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(Completion(rules=rules))

    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def thumbnail(n: str) -> None:
        pass

    worker = dramatiq.Worker(broker, worker_threads=1)
    with pytest.raises(BootRefused, match="unknown actor 'thumbnal'"):
        worker.start()
    assert worker.workers == [] and worker.consumers == {}
    broker.close()


@pytest.fixture
def inline_broker(redis_url: str, tmp_path: Path) -> Iterator[RedisBroker]:
    """A broker whose Completion routes inline with rules that load, and its actor."""
    rules = tmp_path / "good.hjson"
    rules.write_text(json.dumps(rules_naming("thumbnail")))
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(Completion(rules=rules), before=Retries)

    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def thumbnail(n: str) -> None:
        pass

    yield broker
    broker.close()


def completion_of(broker: RedisBroker) -> Completion:
    (completion,) = (m for m in broker.middleware if isinstance(m, Completion))
    return completion


def test_rules_assigned_after_the_boot_that_do_not_compile_leave_the_event_to_the_router(
    inline_broker: RedisBroker, r: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.hjson"
    bad.write_text(json.dumps(rules_naming("thumbnal")))
    with running(inline_broker):
        completion_of(inline_broker).rules = bad
        inline_broker.actors["thumbnail"].send_with_options(
            args=("1",), resc={"task": "thumb/1", "set": None, "release": "taken", "done": DONE}
        )
        assert wait_for(lambda: r.lrange(DONE, 0, -1)) == [b"thumb/1"]
    refused = [rec for rec in caplog.records if "do not compile" in rec.getMessage()]
    assert refused and "unknown actor 'thumbnal'" in refused[0].getMessage()
    assert not [rec for rec in caplog.records if "Unexpected failure" in rec.getMessage()]


def test_a_done_event_that_cannot_be_formed_is_logged_as_lost(
    inline_broker: RedisBroker, caplog: pytest.LogCaptureFixture
) -> None:
    with running(inline_broker):
        message = inline_broker.actors["thumbnail"].send_with_options(
            args=("1",),
            resc={"set": None, "done": DONE},  # no task: no event to write
        )
        wait_for(lambda: [m for m in caplog.messages if m.startswith("LOST: done event")])
    (lost,) = [rec for rec in caplog.records if rec.getMessage().startswith("LOST: done event")]
    assert lost.levelno == logging.CRITICAL
    assert f"of message {message.message_id}" in lost.getMessage()
    assert "KeyError: 'task'" in lost.getMessage()


def test_a_done_event_that_cannot_be_written_is_logged_as_lost_with_the_event(
    inline_broker: RedisBroker, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    r.set("elsewhere/done", "a string where the done list should be")
    with running(inline_broker):
        inline_broker.actors["thumbnail"].send_with_options(
            args=("1",), resc={"task": "thumb/1", "set": None, "done": "elsewhere/done"}
        )
        wait_for(lambda: [m for m in caplog.messages if m.startswith("LOST: done event")])
    (lost,) = [rec for rec in caplog.records if rec.getMessage().startswith("LOST: done event")]
    assert lost.levelno == logging.CRITICAL
    assert "'thumb/1'" in lost.getMessage()

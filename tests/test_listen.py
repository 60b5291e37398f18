"""``listener_channel`` notifications in resc's format, followed by ``listen``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from resc_dramatiq.cli import main
from resc_dramatiq.config.model import Config
from resc_dramatiq.ops.notifications import Notification
from resc_dramatiq.router.router import Router
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import wait_for
from tests.procs import CLI

CONFIG = {
    "listener_channel": "resc/notes",
    "watchers": [
        {
            "input_queue": "global/done",
            "rules": [
                {
                    "name": "treat",
                    "on": r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$",
                    "make": {
                        "task": "trt/${process_id}/${product_id}",
                        "queue": "trt/todo",
                        "set": "trt/set",
                    },
                }
            ],
        }
    ],
}

#: What resc publishes for acq/1/10, acq/1/11, acq/1/10 again (deduplicated), x (unmatched).
EXPECTED = (
    b"global/done/taken TRIGGER acq/1/10 -> trt/1/10\n"
    b"global/done/taken TRIGGER acq/1/11 -> trt/1/11\n"
    b"global/done/taken DONE acq/1/10\n"
    b"global/done/taken DONE acq/1/11\n"
    b"global/done/taken DONE acq/1/10\n"
    b"global/done/taken DONE x\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(CONFIG))
    return path


def listen(config: Path, redis_url: str, r: redis.Redis, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [CLI, "listen", str(config), "--redis-url", redis_url, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: dict(r.pubsub_numsub("resc/notes")).get(b"resc/notes"), what="subscribed")
    return process


def route(r: redis.Redis) -> None:
    r.rpush("global/done", "x", "acq/1/10", "acq/1/11", "acq/1/10")  # acq/1/10 taken first
    Router(ruleset=RuleSet.compile(Config.from_data(CONFIG)), client=r).run_until_idle()


def test_listen_prints_resc_lines_byte_for_byte(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    process = listen(config, redis_url, r, "--count", "6")
    route(r)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert out == EXPECTED


def test_listen_json_splits_each_line_into_its_parts(
    r: redis.Redis, redis_url: str, config: Path
) -> None:
    process = listen(config, redis_url, r, "--count", "3", "--json")
    route(r)
    out, _ = process.communicate(timeout=20)
    first, _, third = (json.loads(line) for line in out.splitlines())
    assert first == {
        "watcher": "global/done/taken",
        "kind": "TRIGGER",
        "event": "acq/1/10",
        "task": "trt/1/10",
    }
    assert third == {
        "watcher": "global/done/taken",
        "kind": "DONE",
        "event": "acq/1/10",
        "task": None,
    }


def test_an_event_with_an_arrow_keeps_its_bytes_in_the_raw_line() -> None:
    raw = b"in/taken TRIGGER a -> b -> t/1"
    note = Notification(raw)
    assert note.raw == raw
    assert note.as_dict()["event"] == "a"  # the split is a convenience; raw is the truth


def test_listen_without_a_channel_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({**CONFIG, "listener_channel": None}))
    result = CliRunner().invoke(main, ["listen", str(path), "--redis-url", "redis://x:1/0"])
    assert result.exit_code == 2
    assert "no channel" in result.stderr

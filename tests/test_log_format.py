"""The JSON-lines log format: one object per line, state changes only, no payloads."""

from __future__ import annotations

import json
import logging
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from resc_dramatiq.ops.logformat import JsonFormatter, formatter
from tests.helpers import wait_for
from tests.procs import routers

IN = "in"
CONFIG = {
    "watchers": [
        {
            "input_queue": IN,
            "max_attempts": 1,
            "unmatched_queue": f"{IN}/unmatched",
            "rules": [
                {
                    "on": r"^acq/(?P<n>[^/]+)$",
                    "make": {"task": "trt/${n}", "queue": "trt", "set": "todo"},
                },
                {
                    "on": r"^bad/(?P<q>[^/]*)/(?P<t>.*)$",
                    "make": {"task": "${t}", "queue": "${q}"},
                },
            ],
        }
    ]
}


def record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord(
        "resc_dramatiq.router.router", logging.WARNING, __file__, 1, message, args, None
    )
    rec.__dict__.update(extra)
    return rec


def test_a_record_is_one_line_of_json_with_ts_level_logger_and_message() -> None:
    line = JsonFormatter().format(record("watcher %r:\nline two", "in"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "resc_dramatiq.router.router"
    assert entry["message"] == "watcher 'in':\nline two"
    assert entry["ts"].endswith("+00:00") and "T" in entry["ts"]


def test_fields_given_with_extra_or_to_the_formatter_join_the_line() -> None:
    line = JsonFormatter(fields={"instance": "r1"}).format(record("x", watcher="in"))
    entry = json.loads(line)
    assert (entry["watcher"], entry["instance"]) == ("in", "r1")


def test_a_field_never_hides_the_level_logger_or_message() -> None:
    line = JsonFormatter(fields={"message": "forged"}).format(record("real", level="forged"))
    entry = json.loads(line)
    assert (entry["message"], entry["level"]) == ("real", "WARNING")


def test_an_exception_is_kept_on_the_same_line_as_exc() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_an_unknown_format_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        formatter("xml")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "log.json"
    path.write_text(json.dumps(CONFIG))
    return path


def run_router(r: redis.Redis, redis_url: str, config: Path, log: Path, *extra: str) -> str:
    """Run a router over matched, duplicate, dead and unmatched events; stop it; its log."""
    marker = f"MARKER{uuid.uuid4().hex}"
    events = [f"acq/{marker}", f"acq/{marker}", f"bad//{marker}", f"none/{marker}"]
    with routers(config=config, redis_url=redis_url, log=log) as start:
        process = start(instance="json-a", extra=extra)
        wait_for(lambda: "started" in process.output(), what="the router starts")
        r.lpush(IN, *events)
        wait_for(lambda: int(r.hget(f"{IN}/stats", "events") or 0) == 4, what="all routed")
        assert process.signal(signal.SIGTERM) == 0
    assert r.llen(f"{IN}/dead") == 1  # each kind of event went through
    output = process.output()
    assert marker not in output
    return output


def test_with_log_format_json_every_router_line_is_a_json_object(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    output = run_router(
        r,
        redis_url,
        config,
        tmp_path / "router.log",
        "--log-format",
        "json",
        "--log-level",
        "debug",
    )
    entries = [json.loads(line) for line in output.splitlines()]
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert [e["message"] for e in entries if e["level"] == "INFO"] == [
        f"router json-a started; watching {IN!r} on {redis_url}",
        "router json-a stopped",
    ]
    assert {e["instance"] for e in entries} == {"json-a"}


def test_the_text_format_stays_the_default_and_logs_no_payload_either(
    r: redis.Redis, redis_url: str, config: Path, tmp_path: Path
) -> None:
    output = run_router(r, redis_url, config, tmp_path / "router.log")
    lines = output.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        f"INFO resc_dramatiq.cli.router_cmds: router json-a started; watching {IN!r} on {redis_url}"
    )
    assert lines[1].endswith("INFO resc_dramatiq.cli.router_cmds: router json-a stopped")

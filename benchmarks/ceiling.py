"""Redis's own ceiling for resc's commands: pipelined, with nothing else in the way.

``redis-benchmark`` (or ``valkey-benchmark``) when one is on PATH, else a pipelined
redis-py loop of the same commands. The per-event ceiling is the rate at which the
server can run the five commands resc needs for one event, back to back.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import redis

#: resc's commands for one event, in order (the list keys are prefilled as needed).
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("LPUSH", "bench:ceil:in", "acq/1/2"),
    ("RPOPLPUSH", "bench:ceil:in", "bench:ceil:taken"),
    ("ZSCORE", "bench:ceil:z", "trt/__rand_int__"),
    ("ZADD", "bench:ceil:z", "1700000000", "trt/__rand_int__"),
    ("LREM", "bench:ceil:taken", "1", "acq/1/2"),
)


@dataclass
class Ceiling:
    """Commands per second of each command, and the tool that measured them."""

    tool: str
    per_command: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        """Events per second if every event needed these commands and nothing else."""
        return 1.0 / sum(1.0 / rate for rate in self.per_command.values())


def measure(url: str, *, requests: int, pipeline: int = 64) -> Ceiling:
    """Measure with the benchmark tool when there is one, else with redis-py."""
    tool = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
    if tool is not None:
        return _with_tool(tool, url, requests=requests, pipeline=pipeline)
    return _with_redis_py(url, requests=requests, pipeline=pipeline)


def _with_tool(tool: str, url: str, *, requests: int, pipeline: int) -> Ceiling:
    parsed = urlparse(url)
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    result = Ceiling(tool=f"{tool} ({version.stdout.strip()}), -P {pipeline}, 50 clients")
    for command in COMMANDS:
        argv = [tool, "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 6379)]
        argv += ["-n", str(requests), "-P", str(pipeline), "-r", "1000000", "--csv", *command]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
        rows = [r for r in csv.reader(io.StringIO(out.stdout)) if len(r) >= 2 and r[0] != "test"]
        result.per_command[command[0]] = float(rows[-1][1])
    return result


def _with_redis_py(url: str, *, requests: int, pipeline: int) -> Ceiling:
    client = redis.Redis.from_url(url)
    result = Ceiling(
        tool=f"redis-py pipelines of {pipeline} on one connection (no benchmark tool found: "
        "client-bound, so only a lower bound of the server's ceiling)"
    )
    for command in COMMANDS:
        args = [a.replace("__rand_int__", "1") for a in command]
        started = time.perf_counter()
        for _ in range(requests // pipeline):
            pipe = client.pipeline(transaction=False)
            for _ in range(pipeline):
                pipe.execute_command(*args)
            pipe.execute()
        result.per_command[command[0]] = requests / (time.perf_counter() - started)
    client.close()
    return result

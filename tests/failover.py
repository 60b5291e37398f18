"""The failover run: a three-stage chain through Sentinel, and kill -9 of the primary.

Everything talks to Redis through the Sentinel URL: three router processes, two Dramatiq
worker processes (``RedisBroker(client=connect(url))``), a producer thread, a ``listen``
process and a ``status --watch --json`` process. The chain:

* ``acq/<n>`` -> actor ``one`` (dedup set ``s1/todo``, released when done);
* its done event ``s1/<n>`` -> actor ``two`` (``s2/todo``, released when done);
* its done event ``s2/<n>`` -> the raw list ``fin`` (dedup set ``fin/todo``, kept).

While the producer pushes, the primary is SIGKILLed; the run measures the time from the
kill to the first commit on the promoted replica (read on that server directly), starts
the killed server again as a replica, lets the producer finish, waits (bounded) for the
chain to settle, and returns what it saw. Should the chain stop with messages held in
live workers' ack sets (a Dramatiq fetch or ack whose reply the failover lost: Dramatiq
hands such messages back only when their worker is gone), the workers are restarted
once, as a deploy would, and ``Redelivery`` hands them back; the figures count them.
Every wait is bounded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from resc_dramatiq import connect
from tests.helpers import wait_for
from tests.procs import CLI, LoggedProcess, routers
from tests.sentinel import RUNS, SentinelCluster, Server, WorkerProcess, sentinel_cluster

INPUT = "ha/in"
CHANNEL = "ha/notes"
STATS = f"{INPUT}/stats"


def chain_config() -> dict[str, Any]:
    """The three-stage chain (two Dramatiq hops, then a deduplicated raw list)."""
    stage = {"queue": "stage", "release": "done"}
    return {
        "listener_channel": CHANNEL,
        "watchers": [
            {
                "input_queue": INPUT,
                "rules": [
                    {
                        "name": "one",
                        "on": r"^acq/(?P<n>\d+)$",
                        "make": {**stage, "actor": "one", "task": "s1/${n}", "set": "s1/todo"},
                    },
                    {
                        "name": "two",
                        "on": r"^s1/(?P<n>\d+)$",
                        "make": {**stage, "actor": "two", "task": "s2/${n}", "set": "s2/todo"},
                    },
                    {
                        "name": "fin",
                        "on": r"^s2/(?P<n>\d+)$",
                        "make": {"task": "fin/${n}", "queue": "fin", "set": "fin/todo"},
                    },
                ],
            }
        ],
    }


@dataclass
class Figures:
    """What one failover run saw."""

    wait: bool
    confirmed: dict[str, float] = field(default_factory=dict)  # event -> when confirmed
    kill_at: float = 0.0
    promoted_s: float = 0.0  # kill -> the Sentinels name a writable new primary
    first_commit_s: float = 0.0  # kill -> the first commit on the new primary
    followed: dict[str, bool] = field(default_factory=dict)  # router -> logged the new primary
    router_logs: dict[str, str] = field(default_factory=dict)  # router -> what it logged
    fin: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)
    taken: list[bytes] = field(default_factory=list)
    alive: dict[str, bool] = field(default_factory=dict)
    listen_lines_after: int = 0
    status_lines_after: int = 0
    status_events_after: int = 0
    events_at_kill: int = 0
    held_in_acks: int = 0
    pushed_at_kill: int = 0
    held_before_restart: int = 0  # held by live workers when the chain stopped moving
    held: list[Any] = field(default_factory=list)  # the first few messages held

    @property
    def lost(self) -> list[str]:
        """Confirmed events whose chain never reached ``fin``."""
        return sorted(
            (e for e in self.confirmed if f"fin/{e.split('/')[1]}" not in self.fin),
            key=lambda e: self.confirmed[e],
        )

    def report(self) -> str:
        """The figures, one line each."""
        repeats = sum(1 for n in self.runs.values() if n > 1)
        lost = self.lost
        tail = [f"{self.confirmed[e] - self.kill_at:+.3f}s" for e in lost[:5]]
        return "\n".join(
            [
                f"failover run, wait option {'on' if self.wait else 'off'}:",
                f"  events confirmed by the producer:   {len(self.confirmed)}"
                f" ({self.pushed_at_kill} before the kill)",
                f"  kill -9 -> new primary named:        {self.promoted_s:.2f} s",
                f"  kill -9 -> first commit on it:       {self.first_commit_s:.2f} s",
                f"  routers that logged the new primary: {sum(self.followed.values())}",
                f"  chains completed (fin, once each):   {len(self.fin)}",
                f"  stage runs repeated (at-least-once): {repeats}",
                f"  lost: {len(lost)} {lost[:5]} confirmed at {tail} from the kill",
                f"  messages held in live workers' acks: {self.held_in_acks}"
                + "".join(f"\n    {_held(m, self.kill_at)}" for m in self.held),
                f"  held by live workers, back after a worker restart: {self.held_before_restart}",
                f"  listen lines after the failover:     {self.listen_lines_after}",
                f"  status --watch lines after it:       {self.status_lines_after}",
            ]
        )


def _held(message: dict[str, Any], kill_at: float) -> str:
    """A held message in a line: actor, arguments, age at the kill."""
    sent_s = message.get("message_timestamp", 0) / 1000
    age = time.time() - (time.monotonic() - kill_at) - sent_s
    return f"{message.get('actor_name')}{message.get('kwargs')} sent {age:.3f} s before the kill"


class Producer(threading.Thread):
    """Pushes ``acq/<n>`` in chunks through the Sentinel URL; with ``wait``, a chunk
    counts as confirmed only once ``WAIT 1`` says a replica has it (else it is pushed
    again: the dedup sets absorb the repeats)."""

    def __init__(self, url: str, *, wait: bool, events: int, figures: Figures) -> None:
        super().__init__(daemon=True)
        self.url, self.wait, self.events, self.figures = url, wait, events, figures
        self.failure: BaseException | None = None
        self.pushed = 0

    def run(self) -> None:
        try:
            client = connect(self.url, socket_timeout=5)
            for first in range(0, self.events, 10):
                chunk = [f"acq/{i}" for i in range(first, min(first + 10, self.events))]
                wait_for(lambda c=chunk: self.push(client, c), timeout_s=60, what="a push")
                self.pushed += len(chunk)
                time.sleep(0.03)
            client.close()
        except BaseException as e:
            self.failure = e

    def push(self, client: redis.Redis, chunk: list[str]) -> bool:
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.lpush(INPUT, *chunk)
                if self.wait:
                    pipe.wait(1, 1000)
                replies = pipe.execute()
        except redis.RedisError:
            return False
        if self.wait and int(replies[-1]) < 1:
            return False
        now = time.monotonic()
        for event in chunk:
            self.figures.confirmed.setdefault(event, now)
        return True


def run_failover(workdir: Path, *, wait: bool, events: int = 1500) -> Figures:
    """One whole run (see the module docstring); returns its figures."""
    figures = Figures(wait=wait)
    config = workdir / "chain.json"
    config.write_text(json.dumps(chain_config()))
    with ExitStack() as stack:
        cluster = stack.enter_context(sentinel_cluster())
        url = cluster.url
        direct = cluster.primary().client()
        extra = ("--wait-replicas", "1", "--wait-timeout-ms", "500") if wait else ()
        start = stack.enter_context(
            routers(config=config, redis_url=url, heartbeat_ttl_s=3, batch=50, extra=extra)
        )
        fleet = {f"r{i}": start(instance=f"r{i}", log=workdir / f"r{i}.log") for i in range(3)}
        workers = {}
        for i in range(2):
            w = WorkerProcess(url=url, done_queue=INPUT, log=workdir / f"w{i}.log", wait=wait)
            stack.callback(w.stop)
            workers[f"w{i}"] = w
        listen = LoggedProcess(
            [CLI, "listen", str(config), "--redis-url", url], log=workdir / "listen.log"
        )
        stack.callback(listen.stop)
        status = LoggedProcess(
            [
                CLI,
                "status",
                str(config),
                "--redis-url",
                url,
                "--watch",
                "--json",
                "--interval",
                "0.5",
            ],
            log=workdir / "status.log",
        )
        stack.callback(status.stop)
        wait_for(lambda: _fleet_up(direct), timeout_s=90, what="routers and workers up")
        producer = Producer(url, wait=wait, events=events, figures=figures)
        producer.start()
        wait_for(lambda: _answering(direct, listen, status), timeout_s=90, what="chains done")
        wait_for(lambda: producer.pushed >= events // 3, timeout_s=90, what="a third pushed")
        figures.pushed_at_kill = producer.pushed
        replica = next(s for s in cluster.servers if s.port != cluster.primary_port())
        listen_before, status_before = _notes(listen), len(_status_lines(status))
        old = cluster.kill_primary()
        figures.kill_at = time.monotonic()
        figures.first_commit_s, figures.promoted_s = _first_commit(cluster, old, replica)
        figures.events_at_kill = _events(replica.client())
        cluster.restart_as_replica(old, replica)
        new = replica.client()
        producer.join(timeout=120)
        assert producer.failure is None, producer.failure
        if not _settle(new, figures) and _held_by(new):
            # Dramatiq hands a live worker's unacknowledged messages back only when that
            # worker is gone: a restart, and Redelivery in the new workers, do it
            figures.held_before_restart = len(_held_by(new))
            for name, w in list(workers.items()):
                w.stop()
                again = f"{name}-again"
                workers[again] = WorkerProcess(
                    url=url, done_queue=INPUT, log=workdir / f"{again}.log", wait=wait
                )
                stack.callback(workers[again].stop)
                del workers[name]
            _settle(new, figures)
        figures.listen_lines_after = _notes(listen) - listen_before
        status_after = _status_lines(status)[status_before:]
        figures.status_lines_after = len(status_after)
        figures.status_events_after = max(
            (line[0]["counters"]["events"] for line in status_after), default=0
        )
        figures.alive = {
            name: p.proc.poll() is None for name, p in {**fleet, **workers}.items()
        } | {"listen": listen.proc.poll() is None, "status": status.proc.poll() is None}
        moved_to = f"is now 127.0.0.1:{replica.port} (was 127.0.0.1:{old.port})"
        figures.followed = {name: moved_to in p.output() for name, p in fleet.items()}
        figures.router_logs = {name: p.output() for name, p in fleet.items()}
        _read_outcome(new, figures)
        direct.close()
    return figures


def _fleet_up(direct: redis.Redis) -> bool:
    """The three routers and the two workers beat on the primary."""
    routers_in = direct.zcard(f"{INPUT}/taken/beats") >= 3
    return bool(routers_in and direct.zcard("dramatiq:__heartbeats__") >= 2)


def _answering(direct: redis.Redis, listen: LoggedProcess, status: LoggedProcess) -> bool:
    """Chains complete; listen and status --watch have answered."""
    return bool(direct.zcard("fin/todo") and _notes(listen) and _status_lines(status))


def _events(client: redis.Redis) -> int:
    try:
        return int(client.hget(STATS, "events") or 0)
    except redis.RedisError:
        return -1


def _first_commit(cluster: SentinelCluster, old: Server, replica: Server) -> tuple[float, float]:
    """(kill -> first commit on ``replica``, kill -> ``replica`` promoted), in seconds.

    Its stats counter stopped moving with the kill (nothing replicates to it any more);
    the first commit on it as the new primary moves it again.
    """
    killed = time.monotonic()
    client = replica.client()
    before = _events(client)
    promoted: list[float] = []

    def moved() -> bool:
        if not promoted and cluster.primary_port() == replica.port:
            promoted.append(time.monotonic() - killed)
        return _events(client) > before

    wait_for(moved, timeout_s=60, what="a commit on the new primary", poll_s=0.02)
    first = time.monotonic() - killed
    new = cluster.wait_for_new_primary(old)
    assert new.port == replica.port
    return first, promoted[0] if promoted else first


def _settle(client: redis.Redis, figures: Figures) -> bool:
    """Wait until every confirmed chain reached ``fin``, or nothing moves any more: no
    input, no taken list, no queued message, ``fin`` stable 3 s. True when complete."""
    stable: list[tuple[int, float]] = []

    def settled() -> bool:
        try:
            done = client.zcard("fin/todo")
            idle = not client.llen(INPUT) and not _taken(client) and not _queued(client)
        except redis.RedisError:
            return False
        if idle and done >= len(figures.confirmed):
            return True
        if not stable or stable[-1][0] != done or not idle:
            stable[:] = [(done, time.monotonic())]
            return False
        return time.monotonic() - stable[-1][1] > 3.0

    try:
        wait_for(settled, timeout_s=120, what="the chain settled", poll_s=0.2)
        return bool(client.zcard("fin/todo") >= len(figures.confirmed))
    except AssertionError as e:
        state = {
            "input": client.llen(INPUT),
            "taken": _taken(client),
            "queued": _queued(client),
            "fin": client.zcard("fin/todo"),
            "confirmed": len(figures.confirmed),
            "sets": {k: client.zrange(k, 0, 4) for k in ("s1/todo", "s2/todo")},
        }
        raise AssertionError(f"{e}: {state}") from None


def _taken(client: redis.Redis) -> list[bytes]:
    return [k for k in client.scan_iter("*/taken/*", count=1000) if client.type(k) == b"list"]


def _queued(client: redis.Redis) -> int:
    return int(client.llen("dramatiq:stage")) + int(client.zcard("dramatiq:stage.DQ"))


def _read_outcome(client: redis.Redis, figures: Figures) -> None:
    figures.fin = Counter(t.decode() for t in client.lrange("fin", 0, -1))
    figures.runs = Counter({k.decode(): int(v) for k, v in client.hgetall(RUNS).items()})
    figures.taken = _taken(client)
    held = _held_by(client)
    figures.held_in_acks = len(held)
    for message_id in held[:10]:
        payload = client.hget("dramatiq:stage.msgs", message_id)
        figures.held.append(json.loads(payload) if payload else {"id": message_id.decode()})


def _held_by(client: redis.Redis) -> list[bytes]:
    """Ids of the messages in the workers' ack sets (fetched, not acknowledged)."""
    acks = list(client.scan_iter("dramatiq:__acks__.*", count=1000))
    return [m for k in acks for m in client.smembers(k)]


def _notes(process: LoggedProcess) -> int:
    return process.output().count(" TRIGGER ")


def _status_lines(process: LoggedProcess) -> list[Any]:
    found = []
    for line in process.output().splitlines():
        if line.startswith("["):
            found.append(json.loads(line))
    return found

"""A real Sentinel deployment for the failover proofs: a primary, a replica, three Sentinels.

Every server is a process of the binary the other tests use
(:func:`resc_dramatiq.ops.embedded.server_binary`), the Sentinels in Sentinel mode
(``<conf> --sentinel``), on free ports, in a temporary directory, each in a process
group of its own. ``down-after-milliseconds`` is 1 s, ``failover-timeout`` small, so a
killed primary is replaced within seconds. :func:`sentinel_cluster` ends every process
group (SIGKILL) and removes the directory on exit, however the test ended.

``python -m tests.sentinel worker URL`` is a Dramatiq worker process on
``RedisBroker(client=connect(URL))`` (see :func:`worker_main`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.helpers import wait_for
from tests.procs import LoggedProcess, free_port, start_server, work_until_sigterm

SERVICE = "primary"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


@dataclass
class Server:
    """One server process (a Redis or a Sentinel) in its own process group."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown of any kind runs."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def client(self) -> redis.Redis:
        """A direct client (no Sentinel), short timeouts."""
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)


@dataclass
class SentinelCluster:
    """The running deployment: its servers, its URL, and what happened to it."""

    workdir: Path
    servers: list[Server] = field(default_factory=list)
    sentinels: list[Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the deployment (db 0)."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def primary_port(self) -> int | None:
        """The primary's port as the Sentinels' majority says, None when they disagree."""
        seen: list[int] = []
        for s in self.sentinels:
            try:
                address = s.client().sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            if address:
                seen.append(int(address[1]))
        for port in set(seen):
            if seen.count(port) >= 2:
                return port
        return None

    def primary(self) -> Server:
        """The server the Sentinels name the primary now."""
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self) -> Server:
        """SIGKILL the current primary; returns it."""
        victim = self.primary()
        victim.kill()
        return victim

    def wait_for_new_primary(self, old: Server, timeout_s: float = 30.0) -> Server:
        """Wait until the Sentinels name another, writable primary; return it."""

        def promoted() -> Server | None:
            port = self.primary_port()
            if port is None or port == old.port:
                return None
            server = next(s for s in self.servers if s.port == port)
            try:
                role = server.client().role()[0]
            except redis.RedisError:
                return None
            return server if role in (b"master", "master") else None

        found: Server = wait_for(promoted, timeout_s=timeout_s, what="a promoted replica")
        return found

    def restart_as_replica(self, old: Server, primary: Server, timeout_s: float = 30.0) -> Server:
        """Start a killed server again on its port as a replica of ``primary`` (what the
        Sentinels would make of it anyway); wait until it is in sync."""
        again = _redis(old.name, self.workdir, replica_of=primary.port, port=old.port)
        self.servers[self.servers.index(old)] = again
        wait_for(lambda: _in_sync(again), timeout_s=timeout_s, what="the old primary in sync")
        return again


def _redis(
    name: str, workdir: Path, replica_of: int | None = None, port: int | None = None
) -> Server:
    port = port or free_port()
    data = workdir / name
    data.mkdir(exist_ok=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", ""]
    args += ["--appendonly", "no", "--loglevel", "warning", "--repl-diskless-sync", "yes"]
    args += ["--repl-diskless-sync-delay", "0", "--enable-debug-command", "local"]
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    proc, log = start_server(name, args, workdir)
    return Server(name, port, proc, log)


def _sentinel(name: str, workdir: Path, primary: int) -> Server:
    port = free_port()
    conf = workdir / f"{name}.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\nloglevel notice\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
    )
    proc, log = start_server(name, [str(conf), "--sentinel"], workdir)
    return Server(name, port, proc, log)


def _ping(server: Server) -> bool:
    try:
        return bool(server.client().ping())
    except redis.RedisError:
        return False


def _in_sync(replica: Server) -> bool:
    try:
        info = replica.client().info("replication")
    except redis.RedisError:
        return False
    return info.get("master_link_status") == "up"


def _sees_everyone(sentinel: Server) -> bool:
    """This Sentinel knows the replica and the two other Sentinels."""
    try:
        client = sentinel.client()
        state = client.sentinel_master(SERVICE)
    except redis.RedisError:
        return False
    return int(state.get("num-slaves", 0)) >= 1 and int(state.get("num-other-sentinels", 0)) >= 2


@contextmanager
def sentinel_cluster(timeout_s: float = 60.0) -> Iterator[SentinelCluster]:
    """Start a primary, a replica and three Sentinels; end them all on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="rs"))
    cluster = SentinelCluster(workdir)
    try:
        primary = _redis("redis-a", workdir)
        cluster.servers.append(primary)
        wait_for(lambda: _ping(primary), timeout_s=timeout_s, what="the primary")
        replica = _redis("redis-b", workdir, replica_of=primary.port)
        cluster.servers.append(replica)
        wait_for(lambda: _in_sync(replica), timeout_s=timeout_s, what="the replica in sync")
        for i in range(3):
            cluster.sentinels.append(_sentinel(f"sentinel-{i}", workdir, primary.port))
        for s in cluster.sentinels:
            wait_for(lambda s=s: _sees_everyone(s), timeout_s=timeout_s, what=f"{s.name} ready")
        yield cluster
    finally:
        for server in [*cluster.sentinels, *cluster.servers]:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the worker process -------------------------------------------------------------------

STAGE_QUEUE = "stage"
RUNS = "ha/runs"


class WorkerProcess(LoggedProcess):
    """``python -m tests.sentinel worker URL DONE_QUEUE [--wait]``: a Dramatiq worker."""

    stop_timeout_s = 20.0

    def __init__(self, *, url: str, done_queue: str, log: Path, wait: bool = False) -> None:
        args = [sys.executable, "-m", "tests.sentinel", "worker", url, done_queue]
        args += ["--wait"] * wait
        root = Path(__file__).parent.parent
        env = {**os.environ, "PYTHONPATH": str(root)}
        super().__init__(args, log=log, cwd=root, env=env)


def worker_main(argv: list[str]) -> int:
    """``worker URL DONE_QUEUE [--wait]``: actors ``one`` and ``two`` count their runs.

    The broker is built from the Sentinel URL as the docs say:
    ``RedisBroker(client=connect(url))``, with ``Completion`` emitting done events onto
    ``DONE_QUEUE`` (``--wait``: each one acknowledged by a replica) and ``Redelivery``.
    Runs until SIGTERM.
    """
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import Retries

    from resc_dramatiq import Completion, Redelivery, connect

    url, done_queue, wait = argv[1], argv[2], "--wait" in argv
    client = connect(url)
    broker = RedisBroker(client=client)
    completion = Completion(done_queue=done_queue, wait_replicas=1 if wait else 0)
    broker.add_middleware(completion, before=Retries)
    broker.add_middleware(Redelivery(heartbeat_timeout_ms=3_000, interval_ms=500))

    @dramatiq.actor(broker=broker, queue_name=STAGE_QUEUE, min_backoff=100, max_backoff=1000)
    def one(n: str) -> None:
        client.hincrby(RUNS, f"s1/{n}", 1)

    @dramatiq.actor(broker=broker, queue_name=STAGE_QUEUE, min_backoff=100, max_backoff=1000)
    def two(n: str) -> None:
        client.hincrby(RUNS, f"s2/{n}", 1)

    del one, two  # declared on the broker; the worker finds them there
    return work_until_sigterm(broker, threads=4)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))

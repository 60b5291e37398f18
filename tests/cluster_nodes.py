"""One node of the tests' Redis Cluster: its process, and what it says of the cluster.

A :class:`Node` is a server process in cluster mode, in a process group of its own,
killed with SIGKILL. A :class:`NodeView` is one node's own account of the cluster, read
from ``CLUSTER NODES``: its role, the slots it serves, whether it sees anyone failing.
Every answer is that node's word; nodes agree only after gossip, so callers wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.procs import free_port, start_server

NODE_TIMEOUT_MS = 1000

#: ``CLUSTER NODES`` flags meaning "this node is not (yet) a healthy member".
TROUBLE_FLAGS = {"fail", "fail?", "handshake", "noaddr"}


@dataclass(frozen=True)
class NodeView:
    """One node's ``CLUSTER NODES`` line about itself, plus whether any line is in trouble."""

    node_id: str
    is_primary: bool
    primary_id: str | None  # whom it replicates, None for a primary
    slots: frozenset[int] = field(repr=False)
    sees_failure: bool

    @classmethod
    def parse(cls, text: str) -> NodeView:
        """Read ``CLUSTER NODES`` output (one line per node, ``myself`` among them)."""
        lines = [line.split() for line in text.splitlines() if line.strip()]
        sees_failure = any(TROUBLE_FLAGS & set(words[2].split(",")) for words in lines)
        mine = next(words for words in lines if "myself" in words[2].split(","))
        flags = set(mine[2].split(","))
        slots: set[int] = set()
        for item in mine[8:]:
            if item.startswith("["):  # [slot->-id] migrating, [slot-<-id] importing
                continue
            first, _, last = item.partition("-")
            slots.update(range(int(first), int(last or first) + 1))
        return cls(
            node_id=mine[0],
            is_primary="master" in flags,
            primary_id=None if mine[3] == "-" else mine[3],
            slots=frozenset(slots),
            sees_failure=sees_failure,
        )


@dataclass
class Node:
    """One cluster node's process, in its own process group."""

    name: str
    port: int
    bus_port: int
    proc: subprocess.Popen[bytes]
    log: Path
    id: str = ""  # CLUSTER MYID, once it runs
    killed_at: float | None = None  # time.monotonic() of the SIGKILL
    slots_at_kill: frozenset[int] = frozenset()
    _client: redis.Redis | None = field(default=None, repr=False)

    def client(self) -> redis.Redis:
        """A direct client of this node only (no redirections followed), short timeouts."""
        if self._client is None:
            self._client = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)
        return self._client

    def running(self) -> bool:
        """The process has not exited."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown of any kind runs. Remembers when,
        and which slots the node served then."""
        if self.running():
            view = self.view()
            self.slots_at_kill = view.slots if view else frozenset()
            self.killed_at = time.monotonic()
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self._client is not None:
            self._client.close()
            self._client = None

    def ping(self) -> bool:
        """It answers."""
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def view(self) -> NodeView | None:
        """Its account of the cluster, None when it does not answer."""
        try:
            raw = self.client().execute_command("CLUSTER", "NODES")
        except redis.RedisError:
            return None
        return NodeView.parse(raw.decode() if isinstance(raw, bytes) else str(raw))

    def cluster_ok(self, known: int) -> bool:
        """It says ``cluster_state:ok`` and knows ``known`` nodes (itself included)."""
        try:
            raw = self.client().execute_command("CLUSTER", "INFO")
        except redis.RedisError:
            return False
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        info = dict(line.split(":", 1) for line in text.split() if ":" in line)
        return info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == str(known)

    def knows_primary(self, node_id: str) -> bool:
        """It has heard of ``node_id`` as a primary."""
        try:
            raw = self.client().execute_command("CLUSTER", "NODES")
        except redis.RedisError:
            return False
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return any(
            words[0] == node_id and "master" in words[2].split(",")
            for words in (line.split() for line in text.splitlines() if line.strip())
        )

    def in_sync(self) -> bool:
        """A replica whose link to its primary is up."""
        try:
            info = self.client().info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"


def start_node(name: str, workdir: Path, port: int = 0, bus_port: int = 0) -> Node:
    """Start one cluster-mode server (a new one, or a killed one again on its ports and
    ``nodes-<port>.conf``, which is how it remembers its identity and the cluster)."""
    port = port or free_port()
    bus_port = bus_port or free_port()
    data = workdir / name
    data.mkdir(exist_ok=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    args += ["--cluster-enabled", "yes", "--cluster-port", str(bus_port)]
    args += ["--cluster-config-file", str(workdir / f"nodes-{port}.conf")]
    args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
    args += ["--appendonly", "no", "--save", "", "--loglevel", "notice"]
    args += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
    proc, log = start_server(name, args, workdir, cwd=data)
    return Node(name, port, bus_port, proc, log)

"""The one way a script reaches Redis: send now, read later, ``WAIT``, ``NOSCRIPT``, nodes.

A :class:`Call` is a script with its ``KEYS`` and ``ARGV``. :func:`send` writes calls
on a connection of their own (one per node on a Redis Cluster), each node's calls
followed by ``WAIT`` when asked, and returns at once: the caller goes on (planning the
next batch) while Redis runs them; :meth:`Sent.replies` reads the replies later. A
server that does not know a script (a restart, a new primary, ``SCRIPT FLUSH``) answers
``NOSCRIPT`` without running it: the script is loaded on that connection and those calls
are sent again. On a cluster, calls go to the primary of their first key's slot as last
learned; a moved slot or an unreachable node makes the layout be learned again before
the error reaches the caller, who treats it as transient (its scripts are recognised
when repeated). :func:`run` is send-and-read for one call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from ..compat import node_client, primary_of_slot
from .cluster import NOT_LOCAL, SLOT_ERRORS, KeyNotLocal, layout_of
from .resilience import ReplicaWait
from .slots import key_slot

#: Tries of a one-off call on a cluster whose slot answered that it is elsewhere now.
CLUSTER_TRIES = 3


@dataclass(frozen=True, slots=True)
class Script:
    """A script's text and its SHA1, as ``EVALSHA`` names it."""

    name: str
    text: str
    sha: str


@dataclass(frozen=True, slots=True)
class Call:
    """One run of ``script`` on ``keys`` and ``args``."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]

    def command(self) -> tuple[Any, ...]:
        """The ``EVALSHA`` command."""
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)


class Sent:
    """Calls written on one connection of a server, their replies not read yet.

    Read them with :meth:`replies` or drop them with :meth:`discard` (the connection is
    closed: the replies are lost; the scripts may or may not have run). With ``wait``,
    a ``WAIT`` follows the calls on the same connection (so it waits for their writes);
    :attr:`acks` is then the number of replicas that acknowledged them.
    """

    def __init__(
        self, pool: redis.ConnectionPool, calls: Sequence[Call], wait: ReplicaWait | None
    ) -> None:
        self.pool, self.calls, self.wait = pool, list(calls), wait
        self.acks: int | None = None
        self.connection: Any = pool.get_connection()  # its methods are untyped
        try:
            self._write(self.calls)
        except BaseException:
            self.discard()
            raise

    def _write(self, calls: list[Call]) -> None:
        commands = [call.command() for call in calls]
        if self.wait is not None:
            commands.append(("WAIT", self.wait.replicas, self.wait.timeout_ms))
        self.connection.send_packed_command(self.connection.pack_commands(commands))

    def replies(self) -> list[Any]:
        """Every call's reply, in order; the first error reply is raised (after every
        reply was read). Calls refused with ``NOSCRIPT`` are run again, once loaded."""
        try:
            replies = self._read(len(self.calls))
            lost = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if lost:  # they did not run: load their scripts, send them again
                for text in {self.calls[i].script.text for i in lost}:
                    self.connection.send_command("SCRIPT", "LOAD", text)
                    self.connection.read_response()
                self._write([self.calls[i] for i in lost])
                for i, reply in zip(lost, self._read(len(lost)), strict=True):
                    replies[i] = reply
        except BaseException:
            self.connection.disconnect()  # replies may still be due: not reusable
            raise
        finally:
            self.pool.release(self.connection)
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        return replies

    def _read(self, count: int) -> list[Any]:
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(self.connection.read_response())
            except SLOT_ERRORS:  # the slot is elsewhere: nothing more here
                raise
            except redis.ResponseError as e:  # the next replies are still due
                replies.append(KeyNotLocal(str(e)) if NOT_LOCAL in str(e) else e)
        if self.wait is not None:
            self.acks = int(self.connection.read_response())
        return replies

    def discard(self) -> None:
        """Close the connection without reading the replies."""
        self.connection.disconnect()
        self.pool.release(self.connection)


class SentToNodes:
    """Calls sent to the nodes of a cluster, one :class:`Sent` per node."""

    def __init__(self, cluster: RedisCluster, calls: Sequence[Call], wait: ReplicaWait | None):
        self.cluster = cluster
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, call in enumerate(calls):
            node = primary_of_slot(cluster, key_slot(call.keys[0]))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        self.count = len(calls)
        self.sent: list[tuple[list[int], Sent]] = []
        try:
            for node, positions in by_node.values():
                pool = node_client(cluster, node).connection_pool
                self.sent.append((positions, Sent(pool, [calls[i] for i in positions], wait)))
        except BaseException as e:
            self.discard()
            self._learn(e)
            raise

    @property
    def acks(self) -> int | None:
        """The fewest acknowledgements of any node (None: no ``WAIT`` was asked for)."""
        acks = [sent.acks for _, sent in self.sent if sent.acks is not None]
        return min(acks) if acks else None

    def replies(self) -> list[Any]:
        """Every call's reply, in the order sent (see :meth:`Sent.replies`)."""
        replies: list[Any] = [None] * self.count
        first: BaseException | None = None
        for positions, sent in self.sent:
            try:
                for i, reply in zip(positions, sent.replies(), strict=True):
                    replies[i] = reply
            except Exception as e:  # read every node's replies before raising
                first = first or e
        if first is not None:
            self._learn(first)
            raise first
        return replies

    def discard(self) -> None:
        """Close every node's connection without reading the replies."""
        for _, sent in self.sent:
            sent.discard()

    def _learn(self, error: BaseException) -> None:
        if isinstance(error, (redis.ConnectionError, redis.TimeoutError, *SLOT_ERRORS)):
            layout_of(self.cluster).refresh()  # a failover or a migration: ask again


Pending = Sent | SentToNodes


def send(
    client: redis.Redis | RedisCluster, calls: Sequence[Call], wait: ReplicaWait | None = None
) -> Pending:
    """Send ``calls`` now (their replies are read later, in order)."""
    if isinstance(client, RedisCluster):
        return SentToNodes(client, calls, wait)
    return Sent(client.connection_pool, calls, wait)


def run(
    client: redis.Redis | RedisCluster, call: Call, wait: ReplicaWait | None = None
) -> tuple[Any, int | None]:
    """Run one call; (its reply, the replicas that acknowledged it: None without ``wait``).

    On a cluster, a slot that moved (the call did not run) is asked again, after the
    layout was learned again, up to :data:`CLUSTER_TRIES` times.
    """
    for attempt in range(1, CLUSTER_TRIES + 1):
        try:
            sent = send(client, [call], wait)
            return sent.replies()[0], sent.acks
        except SLOT_ERRORS:
            if not isinstance(client, RedisCluster) or attempt == CLUSTER_TRIES:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")

"""Finding the concrete Redis keys a key template stands for (``out/${id}`` -> ``out/1``...).

Used by ``status`` and by dedup housekeeping: a constant template is its own key; a
template with variables becomes a ``SCAN MATCH`` glob where each ``${name}`` is ``*``.

On a Redis Cluster the keys are spread over the primaries, each with a keyspace and a
``SCAN`` cursor of its own: redis-py's ``scan_iter`` goes round every primary, and
:func:`scan_page` keeps one cursor per primary for a scan made a page at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import redis
from redis.cluster import RedisCluster

from ..rules.patterns import decode_event as text  # one bytes-to-text (undecodable bytes replaced)

__all__ = ["counters", "glob_of", "names_of", "scan_page", "text"]
from ..compat import node_named
from ..rules.templates import Template
from .connect import is_cluster
from .keys import DRAMATIQ_SUFFIXES

#: Where a scan made a page at a time stands: a cursor per server (``""`` for a single
#: server, a node's name on a cluster). Empty, or every cursor 0: a round starts.
Cursors = Mapping[str, int]


def glob_of(template: Template, prefix: str = "") -> str:
    """The ``SCAN MATCH`` pattern of ``template``: literals escaped, variables as ``*``."""
    return prefix + "".join(
        _escape(literal) + ("*" if i < len(template.names) else "")
        for i, literal in enumerate(template.literals)
    )


def names_of(client: redis.Redis, template: Template, prefix: str = "") -> Iterator[str]:
    """Every existing name ``template`` stands for, without ``prefix``, in SCAN order.

    A constant template is its own name. With a ``prefix`` (a Dramatiq namespace), the
    companion keys of a queue (``.msgs``, ``.DQ``...) are left out.
    """
    if template.is_constant:
        yield template.source
        return
    for key in client.scan_iter(match=glob_of(template, prefix), count=1000):
        name = text(key)[len(prefix) :]
        if not (prefix and name.endswith(DRAMATIQ_SUFFIXES)):
            yield name


def scan_page(
    client: redis.Redis, cursors: Cursors, match: str, count: int = 1000
) -> tuple[dict[str, int], list[Any]]:
    """One page of ``SCAN MATCH match`` on every server still scanning from ``cursors``:
    the cursors to go on from (every one 0 when the round is over), and the keys found.

    A round on a cluster starts on every primary; a node no longer known (a failover)
    is left out of the round, its keys are found by the next one (they are on its
    replica, which the new round scans as a primary).
    """
    going = {server: cursor for server, cursor in cursors.items() if cursor}
    if is_cluster(client):
        return _cluster_page(client, going, match, count)
    cursor, keys = client.scan(going.get("", 0), match=match, count=count)
    return {"": int(cursor)}, keys


def _cluster_page(
    cluster: RedisCluster, going: Cursors, match: str, count: int
) -> tuple[dict[str, int], list[Any]]:
    # redis-py types SCAN's reply as one server's: on a cluster the cursor is a dict
    scan: Any = cluster.scan
    if not going:
        started, keys = scan(0, match=match, count=count)  # every primary
        return {name: int(c) for name, c in started.items()}, keys
    after: dict[str, int] = {}
    found: list[Any] = []
    for name, cursor in going.items():
        node = node_named(cluster, name)
        if node is None:
            continue
        page, keys = scan(cursor, match=match, count=count, target_nodes=node)
        after[name] = int(page[name])
        found += keys
    return after, found


def counters(client: redis.Redis, key: str) -> dict[str, int]:
    """A hash of counters (a watcher's stats, say) as names -> integers."""
    return {text(k): int(v) for k, v in client.hgetall(key).items()}


def _escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)

"""The Lua scripts, loaded from the package's ``lua/`` folder and called by name.

``Scripts(client)["commit"]`` is a redis-py ``Script``: called, it sends ``EVALSHA``
and loads the script by itself when the server lost it (a restart, ``SCRIPT FLUSH``).
Every caller (router, worker, housekeeping) goes through this registry, so there is
one way to call a script. Each script's header lists its ``KEYS`` and ``ARGV``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster

from ..errors import WrongType
from .cluster import layout_of
from .keyspace import text
from .resilience import ReplicaWait

#: What a script returns, as ``{-2, key index, type found, type needed}``, when a key it
#: would write holds another Redis type (every script checks the types before any write).
WRONG_TYPE = -2

#: The scripts shipped in ``lua/``, by name (the file is ``<name>.lua``).
NAMES = (
    "take",
    "commit",
    "apply",
    "settle",
    "emit",
    "heartbeat",
    "reclaim",
    "leave",
    "prune",
    "dead",
    "xq",
    "fire",
)


@functools.cache
def source(name: str) -> str:
    """The text of script ``name``."""
    if name not in NAMES:
        raise KeyError(f"no Lua script {name!r}; known: {', '.join(NAMES)}")
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


class Scripts:
    """Every script, registered on one client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}

    def __getitem__(self, name: str) -> Any:
        """The registered script ``name`` (a redis-py ``Script``)."""
        return self._scripts[name]


def refusal(reply: Any, keys: Sequence[str]) -> tuple[str, str, str] | None:
    """``(key, type found, type needed)`` when ``reply`` is a wrong-type refusal, else None."""
    if isinstance(reply, list) and len(reply) == 4 and reply[0] == WRONG_TYPE:
        return keys[int(reply[1]) - 1], text(reply[2]), text(reply[3])
    return None


def wrong_type(refused: tuple[str, str, str], consequence: str) -> WrongType:
    """The error for a refusal: which key holds which type, and ``consequence``."""
    key, found, needed = refused
    return WrongType(f"key {key!r} holds a {found}, not a {needed}; {consequence}")


def run_and_wait(
    script: Any, keys: list[str], args: list[Any], wait: ReplicaWait
) -> tuple[Any, int]:
    """Run ``script`` and ``WAIT`` on one connection of its own client; (its reply, the
    replicas that acknowledged)."""
    return script_and_wait(script.registered_client, script, keys, args, wait)


def script_and_wait(
    client: redis.Redis, script: Any, keys: list[str], args: list[Any], wait: ReplicaWait
) -> tuple[Any, int]:
    """Run ``script`` and ``WAIT`` on one connection of ``client``.

    ``WAIT`` counts the writes of its own connection: on a cluster both go to the
    primary of the keys' slot. A server that does not know the script (a new primary, a
    restart) is given it and asked again.
    """
    if isinstance(client, RedisCluster):
        cluster = client
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(keys[0]))
        try:
            return script_and_wait(cluster.get_redis_connection(node), script, keys, args, wait)
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.MovedError):
            layout_of(cluster).refresh()  # the slot's primary changed: ask again
            raise
    try:
        return _script_and_wait(client, script.sha, keys, args, wait)
    except redis.exceptions.NoScriptError:
        client.script_load(script.script)
        return _script_and_wait(client, script.sha, keys, args, wait)


def _script_and_wait(
    client: redis.Redis, sha: str, keys: list[str], args: list[Any], wait: ReplicaWait
) -> tuple[Any, int]:
    with client.pipeline(transaction=False) as pipe:
        pipe.evalsha(sha, len(keys), *keys, *args)
        pipe.wait(wait.replicas, wait.timeout_ms)
        reply, acks = pipe.execute()
    return reply, int(acks)

"""The Lua scripts, loaded from the package's ``lua/`` folder and called by name.

``Scripts(client)["commit"]`` is a redis-py ``Script``: called, it sends ``EVALSHA``
and loads the script by itself when the server lost it (a restart, ``SCRIPT FLUSH``).
Every caller (router, worker, housekeeping) goes through this registry, so there is
one way to call a script. Each script's header lists its ``KEYS`` and ``ARGV``.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import redis

#: The scripts shipped in ``lua/``, by name (the file is ``<name>.lua``).
NAMES = ("take", "commit", "emit", "heartbeat", "reclaim", "leave", "prune", "dead", "xq")


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

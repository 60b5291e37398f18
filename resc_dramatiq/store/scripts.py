"""The Lua scripts, loaded from the package's ``lua/`` folder and called by name.

Each script is sent as the constants of :mod:`.contract`, then what it uses of
``lua/library.lua`` (what the scripts share: :func:`library_for`), then its own file; a
script whose first line declares flags (``#!lua flags=...``) keeps that line first.
``Scripts(client)["commit"]`` is that script bound to a client: called, or sent, it goes
through :mod:`.wire`, the one way a script reaches Redis. Each script's header lists its
``KEYS`` and ``ARGV``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster

from ..errors import WrongType
from .contract import Status, lua_constants
from .keyspace import text
from .resilience import ReplicaWait
from .wire import Call, Pending, Script, run, send

#: What a script returns, as ``{-2, key index, type found, type needed}``, when a key it
#: would write holds another Redis type (every script checks the types before any write).
WRONG_TYPE = Status.WRONG_TYPE

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
    "expire",
    "pending",
    "join_close",
)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


@functools.cache
def script(name: str, *, flags: bool = True) -> Script:
    """Script ``name`` as sent: its flags line if it has one (``flags``: else left out,
    for a server that knows none), the constants, the library, then its own text."""
    if name not in NAMES:
        raise KeyError(f"no Lua script {name!r}; known: {', '.join(NAMES)}")
    body = _read(name)
    first = ""
    if body.startswith("#!"):
        first, _, body = body.partition("\n")
        first = f"{first}\n" if flags else ""
    full = f"{first}{lua_constants()}{library_for(body)}\n-- {name}.lua\n{body}"
    return Script(name, full, hashlib.sha1(full.encode()).hexdigest())


#: A top-level definition of the library: ``local function <name>`` or ``local <names>``.
_DEFINITION = re.compile(r"^local (?:function )?(\w+(?:, \w+)*)", re.MULTILINE)
_NAME = re.compile(r"\b[A-Za-z_]\w*\b")
_COMMENT = re.compile(r"--[^\n]*")  # no script has "--" in a string (test_contract)


def _names(lua: str) -> set[str]:
    """The names ``lua`` mentions outside its comments."""
    return set(_NAME.findall(_COMMENT.sub("", lua)))


def library_for(body: str) -> str:
    """The library's definitions that ``body`` uses, itself or through the ones it uses,
    in the library's order (a script runs its whole text on every call: one that takes
    events need not make the join functions each time), after the library's heading."""
    library = _read("library")
    starts = [m.start() for m in _DEFINITION.finditer(library)]
    heading = library[: starts[0]] if starts else library
    blocks = [library[a:b] for a, b in zip(starts, [*starts[1:], len(library)], strict=True)]
    defines = [set(_DEFINITION.match(b).group(1).split(", ")) for b in blocks]  # type: ignore[union-attr]
    used = _names(body)
    kept = [False] * len(blocks)
    grew = True
    while grew:  # until no kept block names another
        grew = False
        for i, block in enumerate(blocks):
            if not kept[i] and defines[i] & used:
                kept[i], grew = True, True
                used |= _names(block)
    return heading + "".join(b for b, k in zip(blocks, kept, strict=True) if k)


def source(name: str) -> str:
    """The text of script ``name`` as sent to Redis."""
    return script(name).text


class Bound:
    """A script bound to a client."""

    def __init__(self, client: redis.Redis | RedisCluster, name: str) -> None:
        self.client, self.script = client, script(name)

    def __call__(
        self, *, keys: Sequence[str], args: Sequence[Any], wait: ReplicaWait | None = None
    ) -> Any:
        """Run the script and return its reply."""
        return run(self.client, Call(self.script, keys, args), wait)[0]

    def send(
        self, keys: Sequence[str], args: Sequence[Any], wait: ReplicaWait | None = None
    ) -> Pending:
        """Send the script now; read its reply later (``.replies()[0]``)."""
        return send(self.client, [Call(self.script, keys, args)], wait)


class Scripts:
    """Every script, bound to one client (a server's, a slot's, or a cluster's)."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client
        self._bound = {name: Bound(client, name) for name in NAMES}

    def __getitem__(self, name: str) -> Bound:
        """Script ``name`` bound to this client."""
        return self._bound[name]


def refusal(reply: Any, keys: Sequence[str]) -> tuple[str, str, str] | None:
    """``(key, type found, type needed)`` when ``reply`` is a wrong-type refusal, else None."""
    if isinstance(reply, list) and len(reply) == 4 and reply[0] == WRONG_TYPE:
        return keys[int(reply[1]) - 1], text(reply[2]), text(reply[3])
    return None


def wrong_type(refused: tuple[str, str, str], consequence: str) -> WrongType:
    """The error for a refusal: which key holds which type, and ``consequence``."""
    key, found, needed = refused
    return WrongType(f"key {key!r} holds a {found}, not a {needed}; {consequence}")

"""Finding the concrete Redis keys a key template stands for (``out/${id}`` -> ``out/1``...).

Used by ``status`` and by dedup housekeeping: a constant template is its own key; a
template with variables becomes a ``SCAN MATCH`` glob where each ``${name}`` is ``*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import redis

from ..rules.patterns import decode_event as text  # one bytes-to-text (undecodable bytes replaced)

__all__ = ["counters", "glob_of", "names_of", "text"]
from ..rules.templates import Template
from .keys import DRAMATIQ_SUFFIXES


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


def counters(client: redis.Redis, key: str) -> dict[str, int]:
    """A hash of counters (a watcher's stats, say) as names -> integers."""
    return {text(k): int(v) for k, v in client.hgetall(key).items()}


def _escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)

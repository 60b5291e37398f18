"""Finding the concrete Redis keys a key template stands for (``out/${id}`` -> ``out/1``...).

Used by ``status`` and by dedup housekeeping: a constant template is its own key; a
template with variables becomes a ``SCAN MATCH`` glob where each ``${name}`` is ``*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import redis

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


def text(value: bytes | str) -> str:
    """A key or member as text (undecodable bytes replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)

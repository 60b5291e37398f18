"""The names the dashboard answers to: its defence against DNS rebinding.

A server on 127.0.0.1 is reachable from any web page whose name its owner points at
127.0.0.1 (DNS rebinding): the browser then sends that name as ``Host`` and ``Origin``,
and treats the dashboard's pages as the attacker's own. Only the ``Host`` header tells
such a request apart, so every request must name an allowed host: the loopback names
(``localhost``, ``127.0.0.1``, ``[::1]``) by default, the address the dashboard is bound
to, and the names given with ``--allowed-host``. A POST's ``Origin`` must name one too.

An allowed host is ``name`` (any port) or ``name:port`` (that port only); a ``Host``
without a port stands for port 80. Names compare without regard to case.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: The loopback names a dashboard answers to unless told otherwise.
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
#: Addresses that bind every interface: no request names them.
WILDCARDS = ("", "0.0.0.0", "::", "[::]")
#: The port of a ``Host`` that names none.
DEFAULT_PORT = 80


@dataclass(frozen=True, slots=True)
class HostName:
    """A host name, lower case (IPv6 addresses in brackets), and its port if given."""

    name: str
    port: int | None


def parse_host(value: str) -> HostName | None:
    """``name[:port]`` as a :class:`HostName`; None when it is no such thing."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address (an allowed host written as ::1)
    if value.startswith("["):
        end = value.find("]")
        name, rest = (value[: end + 1], value[end + 1 :]) if end > 0 else ("", "")
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if not name or any(c in name for c in "/\\@ ,"):
        return None
    if not rest:
        return HostName(name, None)
    digits = rest[1:]
    if not rest.startswith(":") or not (digits.isascii() and digits.isdigit()) or len(digits) > 5:
        return None
    return HostName(name, int(digits))


class AllowedHosts:
    """The hosts a request may name (``Host``) or come from (``Origin``)."""

    def __init__(self, hosts: Iterable[str]) -> None:
        parsed = []
        for host in hosts:
            found = parse_host(host)
            if found is None:
                raise ValueError(f"not a host name or name:port: {host!r}")
            parsed.append(found)
        self.hosts = tuple(parsed)

    def allows(self, host: str) -> bool:
        """Whether a ``Host`` header names an allowed host."""
        found = parse_host(host)
        if found is None:
            return False
        port = DEFAULT_PORT if found.port is None else found.port
        return any(h.name == found.name and h.port in (None, port) for h in self.hosts)

    def allows_origin(self, origin: str) -> bool:
        """Whether an ``Origin`` header (``scheme://host[:port]``) names an allowed host."""
        scheme, sep, host = origin.partition("://")
        return bool(sep) and scheme.lower() in ("http", "https") and self.allows(host)


def hosts_for(bound: str, port: int, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The hosts of a dashboard bound to ``bound``:``port``: the loopback names and the
    bound address on that port, then ``extra`` (each ``name`` or ``name:port``)."""
    own = [f"{name}:{port}" for name in LOOPBACK]
    if bound.lower() not in WILDCARDS:
        address = f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound
        own.append(f"{address}:{port}")
    return (*own, *extra)

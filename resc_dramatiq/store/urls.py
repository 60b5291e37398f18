"""Reading the Redis URLs this package accepts, and printing them with passwords masked.

Pure (no connection): :func:`parse_sentinel` and :func:`parse_cluster` read the
multi-host forms into :class:`SentinelTarget` and :class:`ClusterTarget`;
:func:`check_plain` refuses the plain forms redis-py would accept and fail on later (an
unknown option). An unreadable URL raises :class:`~resc_dramatiq.errors.RedisURLError`
naming it, its secrets masked by :func:`~.masking.safe_url`. :mod:`.connect` turns them
into clients (the forms are listed there).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlparse

from redis.connection import Connection, ConnectionPool, SSLConnection, UnixDomainSocketConnection

from ..errors import RedisURLError
from .masking import safe_url

__all__ = [
    "ClusterTarget",
    "SentinelTarget",
    "check_plain",
    "check_userinfo",
    "is_cluster_url",
    "is_sentinel",
    "parse_cluster",
    "parse_sentinel",
    "safe_url",
    "scheme_of",
]

#: The schemes redis-py reads itself (``Redis.from_url``).
PLAIN_SCHEMES = ("redis", "rediss", "unix")

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # -> TLS
DEFAULT_SENTINEL_PORT = 26379
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # -> TLS
DEFAULT_CLUSTER_PORT = 6379

#: Query parameters of a Sentinel URL (the others belong to plain URLs only).
SENTINEL_QUERY = {"sentinel_username", "sentinel_password", "db"}

#: Query parameters of a Cluster URL: only ``db``, and only 0.
CLUSTER_QUERY = {"db"}

#: Every scheme :func:`~resc_dramatiq.store.connect.connect` reads, as errors list them.
SCHEMES = (*PLAIN_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """What a Cluster URL names."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a Sentinel URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case; :class:`RedisURLError` listing every scheme this
    package reads when it is none of them."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        _invalid(url, f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    return scheme.lower()


def check_userinfo(url: str) -> None:
    """Refuse an ``@`` after a ``/``, ``?`` or ``#``: either a password holds one of those
    (every parser would end the host part there, and quote a piece of the password) or
    an option holds an ``@`` (which masking would take for the end of a password)."""
    rest = url.partition("://")[2]
    at = rest.rfind("@")
    if at >= 0 and any(c in rest[:at] for c in "/?#"):
        _invalid(
            url,
            "an '@' after a '/', '?' or '#': percent-encode '/', '?' and '#' in a user name "
            "or password (%2F, %3F, %23), '@' in an option (%40)",
        )


def is_cluster_url(url: str) -> bool:
    """True when ``url`` is a ``redis+cluster://`` or ``rediss+cluster://`` URL."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def is_sentinel(url: str) -> bool:
    """True when ``url`` is a ``redis+sentinel://`` or ``rediss+sentinel://`` URL."""
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelTarget:
    """Read a Sentinel URL; :class:`RedisURLError` says what is wrong with it."""
    parts = _split(url, SENTINEL_QUERY)
    service, _, db_part = parts.path.partition("/")
    if not service:
        _invalid(url, "no service name (redis+sentinel://host:port/service_name[/db])")
    params = parts.params
    return SentinelTarget(
        sentinels=tuple(_address(url, one) for one in parts.hosts.split(",")),
        service=unquote(service),
        db=_db(url, db_part.strip("/") or params.get("db", "0")),
        username=parts.username,
        password=parts.password,
        sentinel_username=params.get("sentinel_username") or None,
        sentinel_password=params.get("sentinel_password") or None,
        ssl=SENTINEL_SCHEMES[parts.scheme],
    )


def parse_cluster(url: str) -> ClusterTarget:
    """Read a Cluster URL; :class:`RedisURLError` says what is wrong with it."""
    parts = _split(url, CLUSTER_QUERY)
    db = _db(url, parts.path.strip("/") or parts.params.get("db", "0"))
    if db != 0:
        _invalid(url, f"a Redis Cluster has only database 0, not {db}")
    return ClusterTarget(
        nodes=tuple(
            _address(url, one, DEFAULT_CLUSTER_PORT, "node") for one in parts.hosts.split(",")
        ),
        username=parts.username,
        password=parts.password,
        ssl=CLUSTER_SCHEMES[parts.scheme],
    )


@dataclass(frozen=True, slots=True)
class _Parts:
    """A multi-host URL taken apart (``scheme://[user[:password]@]hosts[/path][?query]``)."""

    scheme: str  # lower case
    username: str | None
    password: str | None
    hosts: str
    path: str
    params: dict[str, str]


def _split(url: str, known: set[str]) -> _Parts:
    """Take a Sentinel or Cluster URL apart; refuse query options not in ``known``."""
    check_userinfo(url)
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if at else ("", "", "")
    params = dict(parse_qsl(query, keep_blank_values=True))
    check_options(
        url, [k for k, eq, _ in (p.partition("=") for p in query.split("&")) if eq], known
    )
    return _Parts(
        scheme.lower(), unquote(user) or None, unquote(password) or None, hosts, path, params
    )


def _address(
    url: str, text: str, default_port: int = DEFAULT_SENTINEL_PORT, what: str = "Sentinel"
) -> tuple[str, int]:
    if not text:
        _invalid(url, f"an empty {what} address (host[:port],host[:port]...)")
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        _invalid(url, f"no host in {what} address {text!r}")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        _invalid(url, f"bad port in {what} address {text!r}")
    return host, int(port)


def _db(url: str, text: str) -> int:
    if not text.isdigit():
        _invalid(url, f"the database must be a number, not {text!r}")
    return int(text)


def _invalid(url: str, why: str) -> None:
    raise RedisURLError(f"invalid Redis URL {safe_url(url)}: {why}")


def check_options(url: str, names: list[str], known: set[str], hint: str = "") -> None:
    """Refuse the query option ``names`` not in ``known``, naming them (the options
    written without ``=`` are ignored, as redis-py ignores them, and never named: such a
    part may be the end of a password holding ``&``)."""
    unknown = sorted({unquote(name) for name in names} - known)
    if unknown:
        listed = f"known: {', '.join(sorted(known))}" if len(known) < 10 else hint
        _invalid(
            url, f"unknown option(s) {', '.join(unknown)}" + (f" ({listed})" if listed else "")
        )


def check_plain(url: str) -> None:
    """Refuse a ``redis://``, ``rediss://`` or ``unix://`` URL that redis-py's
    ``from_url`` would take and fail on later: an unknown query option (a ``TypeError``
    at the first command), a user info it would cut short."""
    scheme = scheme_of(url)
    check_userinfo(url)
    names = [name for name, _ in parse_qsl(urlparse(url).query)]  # as from_url reads it
    ssl = any(name.startswith("ssl_") for name in names) and scheme != "rediss"
    hint = "ssl_* options need rediss://" if ssl else "not an option of redis-py's connections"
    check_options(url, names, _plain_options(scheme), hint)


def _plain_options(scheme: str) -> set[str]:
    """The query options redis-py's pool and connection for ``scheme`` accept."""
    connection = {"unix": UnixDomainSocketConnection, "rediss": SSLConnection}
    pool = _named_parameters(ConnectionPool) - {"connection_class"}
    return pool | _named_parameters(connection.get(scheme, Connection))


def _named_parameters(cls: type) -> set[str]:
    """The keyword parameters of the constructors along ``cls``'s MRO."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None:
            names |= {
                p.name for p in inspect.signature(init).parameters.values() if p.kind in kinds
            }
    return names - {"self"}

"""Reading the Redis URLs this package accepts, and printing them with passwords masked.

Pure (no connection): :func:`parse_sentinel` and :func:`parse_cluster` read the
multi-host forms into :class:`SentinelTarget` and :class:`ClusterTarget`; an unreadable
URL raises :class:`~resc_dramatiq.errors.RedisURLError` naming it, its password masked
by :func:`safe_url`. :mod:`.connect` turns them into clients (the forms are listed
there).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from ..errors import RedisURLError

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # -> TLS
DEFAULT_SENTINEL_PORT = 26379
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # -> TLS
DEFAULT_CLUSTER_PORT = 6379

#: Query parameters of a Sentinel URL (the others belong to plain URLs only).
SENTINEL_QUERY = {"sentinel_username", "sentinel_password", "db"}

#: Query parameters of a Cluster URL: only ``db``, and only 0.
CLUSTER_QUERY = {"db"}

#: Names whose values :func:`safe_url` masks wherever they appear in a query.
SECRET_QUERY = {"password", "sentinel_password"}


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
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if at else ("", "", "")
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(params) - known)
    if unknown:
        _invalid(url, f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
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


def safe_url(url: str) -> str:
    """``url`` with its passwords (userinfo, ``password=`` and ``sentinel_password=``
    query parameters) replaced by ``***``, for printing."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, qmark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    if query:
        pairs = [p.partition("=") for p in query.split("&")]
        query = "&".join(f"{k}{eq}{'***' if k in SECRET_QUERY and v else v}" for k, eq, v in pairs)
    masked = f"{userinfo}{at}{hosts}{slash}{path}{qmark}{query}"
    return f"{scheme}{sep}{masked}"

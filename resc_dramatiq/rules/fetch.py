"""The fetch layer: rules enriched with JSON from HTTP services (resc's fetchers).

A rule's ``fetch`` entries are ``GET`` calls; each JSON object returned (one object, or
each object of an array) becomes one set of ``<returns>.<field>`` variables from its
top-level string and number fields, and the rule's own variables win on a clash.
Several fetchers add up as in resc: each fetcher's results make tasks on their own.

What resc gets wrong and :class:`Fetcher` does not:

* every value put into a URL is percent-encoded: an event cannot change the host,
  the path or the query of the call;
* calls have a timeout and a bounded number of retries with backoff; a call that
  still fails raises :class:`~resc_dramatiq.errors.FetchError` (HTTP status or error),
  so the router retries the event and finally dead-letters it with that reason;
* a body that is not the documented shape is refused with a clear reason;
* header values may read secrets from the environment (``${env:NAME}``), resolved and
  checked when the fetcher is built, never logged nor put in an error;
* the calls of a batch run concurrently (:meth:`Fetcher.prefetch`), each watcher with its
  own pool, under a per-batch deadline: a slow service delays a batch by at most one
  call's worst case, never N calls', and other watchers not at all.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ..config.model import FetchSpec
from ..errors import ConfigError, FetchError, RuleError
from .model import Match
from .ruleset import RuleSet
from .templates import Template

#: ``${env:NAME}`` in a header value: the environment variable NAME, read at start.
ENV_REFERENCE = re.compile(r"\$\{env:(\w+)\}")

#: Statuses worth another try: the service is overloaded or restarting.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Tuning of the fetch layer (per-call ``timeout_s`` and ``retries`` are in the rules)."""

    max_concurrency: int = 16  # calls in flight per watcher
    backoff_first_s: float = 0.2
    backoff_cap_s: float = 2.0


class Fetcher:
    """The router's expander: ``Router(expander=Fetcher.for_ruleset(ruleset))``.

    Calling it with a :class:`~resc_dramatiq.rules.Match` returns one variable set per
    fetched result. :meth:`prefetch` (called by the router before a batch is expanded)
    runs the batch's calls concurrently; calls not prefetched are made on the spot.
    """

    def __init__(
        self,
        *,
        secrets: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
        options: FetchOptions | None = None,
    ) -> None:
        self._secrets = dict(secrets or {})
        self._owns_client = client is None
        self._client = client or httpx.Client(follow_redirects=False)
        self.options = options or FetchOptions()
        self._local = threading.local()  # per watcher thread: its pool and batch results
        self._pools: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    @classmethod
    def for_ruleset(
        cls,
        ruleset: RuleSet,
        *,
        environ: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
        options: FetchOptions | None = None,
    ) -> Fetcher:
        """A fetcher for the rules of ``ruleset``; raise :class:`ConfigError` on bad headers."""
        secrets = check_headers(ruleset, os.environ if environ is None else environ)
        return cls(secrets=secrets, client=client, options=options)

    def __call__(self, match: Match) -> list[dict[str, str]]:
        """One variable set per result of each of the rule's fetchers (resc's union)."""
        cache: dict[tuple[int, str], Future[list[dict[str, str]]]] = getattr(
            self._local, "cache", {}
        )
        found = []
        for spec in match.rule.fetch:
            url = fetch_url(spec, match.variables)
            future = cache.get((id(spec), url))
            results = future.result() if future is not None else self.get(spec, url)
            found += [{**fetched, **match.variables} for fetched in results]
        return found

    def prefetch(self, matches: Sequence[Match]) -> None:
        """Start every call of a batch at once; wait at most one call's worst case.

        A call still running at the deadline fails its event (retried in a later batch).
        """
        pool = self._pool()
        calls: dict[tuple[int, str], Future[list[dict[str, str]]]] = {}
        deadline_s = 0.0
        for spec, url in _calls(matches):
            if (id(spec), url) not in calls:
                calls[id(spec), url] = pool.submit(self.get, spec, url)
                deadline_s = max(deadline_s, self.worst_case_s(spec))
        self._local.cache = calls
        _, late = wait(calls.values(), timeout=deadline_s)
        for key, future in calls.items():
            if future in late:
                future.cancel()
                calls[key] = _failed(f"GET {key[1]}: no answer within {deadline_s:.1f} s")

    def get(self, spec: FetchSpec, url: str) -> list[dict[str, str]]:
        """``GET url`` with timeout and retries; the results, or :class:`FetchError`."""
        headers = {
            name: ENV_REFERENCE.sub(lambda m: self._secrets[m[1]], value)
            for name, value in spec.headers.items()
        }
        problem = ""
        for delay_s in self._delays(spec.retries):
            time.sleep(delay_s)
            try:
                response = self._client.get(url, headers=headers, timeout=spec.timeout_s)
            except httpx.TimeoutException:
                problem = f"no answer within {spec.timeout_s:g} s"
                continue
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if response.status_code in RETRIED_STATUSES:
                problem = f"HTTP {response.status_code}"
                continue
            if not response.is_success:
                raise FetchError(f"GET {url}: HTTP {response.status_code}")
            return parse_results(spec.returns, response.content, url)
        tries = spec.retries + 1
        raise FetchError(f"GET {url}: {problem} (after {tries} attempt{'s' * (tries > 1)})")

    def worst_case_s(self, spec: FetchSpec) -> float:
        """The longest one call of ``spec`` can take, retries and backoff included."""
        return (spec.retries + 1) * spec.timeout_s + sum(self._delays(spec.retries)) + 0.5

    def close(self) -> None:
        """Stop the pools, and the HTTP client unless it was given."""
        with self._lock:
            for pool in self._pools:
                pool.shutdown(wait=False, cancel_futures=True)
            self._pools.clear()
        if self._owns_client:
            self._client.close()

    def _pool(self) -> ThreadPoolExecutor:
        pool: ThreadPoolExecutor | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = ThreadPoolExecutor(self.options.max_concurrency, thread_name_prefix="fetch")
            with self._lock:
                self._pools.append(pool)
            self._local.pool = pool
        return pool

    def _delays(self, retries: int) -> list[float]:
        """0 before the first try, then doubling delays up to the cap."""
        first, cap = self.options.backoff_first_s, self.options.backoff_cap_s
        return [0.0] + [min(cap, first * 2.0**i) for i in range(retries)]


def _calls(matches: Sequence[Match]) -> Iterator[tuple[FetchSpec, str]]:
    """Each fetch of the matches, with its URL (a URL that cannot be built is skipped:
    expanding the match raises the same error for its event)."""
    for match in matches:
        for spec in match.rule.fetch:
            try:
                yield spec, fetch_url(spec, match.variables)
            except RuleError:
                continue


def _failed(reason: str) -> Future[list[dict[str, str]]]:
    future: Future[list[dict[str, str]]] = Future()
    future.set_exception(FetchError(reason))
    return future


def fetch_url(spec: FetchSpec, variables: Mapping[str, str]) -> str:
    """The URL of ``spec`` with each value percent-encoded (``/?#@:%`` and ``..`` too)."""
    template = _template(spec.url)
    return template.render({n: encode(variables[n]) for n in template.names if n in variables})


def encode(value: str) -> str:
    """A value made safe for any place in a URL: it stays one piece of one path segment."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


@functools.lru_cache(maxsize=1024)
def _template(source: str) -> Template:
    return Template.compile(source)


def parse_results(returns: str, body: bytes, url: str) -> list[dict[str, str]]:
    """The variable sets of a JSON body: an object, or an array of objects."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except ValueError:
        raise FetchError(f"GET {url}: the response is not JSON") from None
    items = data if isinstance(data, list) else [data]
    if not isinstance(data, list | dict):
        raise FetchError(
            f"GET {url}: the response is a JSON {_json_type(data)}, "
            "not an object or an array of objects"
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise FetchError(f"GET {url}: item {i} of the array is a JSON {_json_type(item)}")
    return [_variables(returns, item) for item in items]


def _variables(returns: str, item: Mapping[str, Any]) -> dict[str, str]:
    """``<returns>.<field>`` for the top-level string and number fields (as resc)."""
    found = {}
    for key, value in item.items():
        if isinstance(value, str):
            found[f"{returns}.{key}"] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[f"{returns}.{key}"] = str(value)
    return found


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "number")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_headers(ruleset: RuleSet, environ: Mapping[str, str] | None) -> dict[str, str]:
    """The secrets the rules' headers read from ``environ``; :class:`ConfigError` when a
    header uses another ``${...}``, or names a variable that is unset or unsafe.

    ``environ=None`` checks the headers' shape only (``check`` on a machine without the
    router's secrets).
    """
    config, problems = ruleset.config, []
    secrets: dict[str, str] = {}
    for w, watcher in enumerate(config.spec.watchers):
        for r, rule in enumerate(watcher.rules):
            for f, spec in enumerate(rule.fetch):
                for name, value in spec.headers.items():
                    where = config.locate(f"watchers[{w}].rules[{r}].fetch[{f}].headers.{name}")
                    problem = _header_problem(value, environ)
                    if problem:
                        problems.append(f"{where}: {problem}")
                    if environ is not None:
                        secrets.update(
                            (e, environ.get(e, "")) for e in ENV_REFERENCE.findall(value)
                        )
    if problems:
        raise ConfigError(problems)
    return secrets


def _header_problem(value: str, environ: Mapping[str, str] | None) -> str | None:
    if "${" in ENV_REFERENCE.sub("", value):
        return "headers take ${env:NAME} only (rule variables are not sent in headers)"
    if environ is None:
        return None
    for env in ENV_REFERENCE.findall(value):
        if env not in environ:
            return f"environment variable {env} is not set"
        if any(c in environ[env] for c in "\r\n\0"):
            return f"environment variable {env} holds a line break"
    return None

"""The fetch layer: rules enriched with JSON from HTTP services (resc's fetchers).

A rule's ``fetch`` entries are ``GET`` calls; each JSON object returned (one object, or
each object of an array) becomes one set of ``<returns>.<field>`` variables from its
top-level string and number fields, and the rule's own variables win on a clash.
Several fetchers add up as in resc: each fetcher's results make tasks on their own.

What resc gets wrong and :class:`Fetcher` does not:

* every value put into a URL is percent-encoded: an event cannot change the host,
  the path or the query of the call;
* the scheme, host and port of a URL are fixed by the config (checked at load): an
  event cannot send the call, or the rule's secret headers, to a server of its choice;
* each attempt has a deadline for the whole answer (connect, headers and body,
  ``timeout_s``) and a size cap (``max_body_bytes``, 1 MiB by default), read streamed
  (:mod:`.fetch_call`); a bounded number of retries with backoff follow timeouts,
  network errors and 5xx. A call that still fails raises
  :class:`~resc_dramatiq.errors.FetchError` with the reason, so the router retries the
  event and finally dead-letters it with that reason;
* a body that is not the documented shape is refused with a clear reason;
* header values may read secrets from the environment (``${env:NAME}``), resolved and
  checked when the fetcher is built, never logged nor put in an error;
* the calls of a batch run concurrently on one event loop (:meth:`Fetcher.prefetch`),
  at most ``max_concurrency`` per watcher and service: a call past its deadline is
  cancelled, never left running, so a stuck service delays no other service and no
  later batch.

Over ~250 lines on purpose: planning a batch's calls (which, their cache, the variables
they give) is one algorithm; one call and the reading of its answer are in
``fetch_call`` and ``fetch_results``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from ..config.model import FetchSpec
from ..errors import ConfigError, FetchError, RuleError
from .fetch_call import EventLoopThread, RetriableFetchError, get_body
from .fetch_results import parse_results
from .model import Match
from .ruleset import RuleSet
from .templates import Template

#: ``${env:NAME}`` in a header value: the environment variable NAME, read at start.
ENV_REFERENCE = re.compile(r"\$\{env:(\w+)\}")


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Tuning of the fetch layer (per-call ``timeout_s`` and ``retries`` are in the rules)."""

    max_concurrency: int = 16  # calls in flight per watcher and service
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
        client: httpx.AsyncClient | None = None,
        options: FetchOptions | None = None,
    ) -> None:
        self._secrets = dict(secrets or {})
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self.options = options or FetchOptions()
        self._loop = EventLoopThread(name="fetch")
        self._local = threading.local()  # per watcher thread: its limits and batch results

    @classmethod
    def for_ruleset(
        cls,
        ruleset: RuleSet,
        *,
        environ: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
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
        """Start every call of a batch at once and wait for them all.

        Each call ends by itself within its worst case (:meth:`worst_case_s`) once it
        has a place among the ``max_concurrency`` calls to its service, so the wait is
        bounded; the bound below is a safety net, not the mechanism.
        """
        calls: dict[tuple[int, str], Future[list[dict[str, str]]]] = {}
        waves: dict[str, int] = {}
        worst_s: dict[str, float] = {}
        for spec, url in _calls(matches):
            if (id(spec), url) not in calls:
                calls[id(spec), url] = self._loop.submit(self._get(spec, url, self._limit(spec)))
                origin = _origin(spec.url)
                waves[origin] = waves.get(origin, 0) + 1
                worst_s[origin] = max(worst_s.get(origin, 0.0), self.worst_case_s(spec))
        self._local.cache = calls
        per_wave = self.options.max_concurrency
        bound_s = max((math.ceil(n / per_wave) * worst_s[o] for o, n in waves.items()), default=0.0)
        _, late = wait(calls.values(), timeout=bound_s + 1.0)
        for key, future in calls.items():
            if future in late:
                future.cancel()  # cancels the task on the loop: the call stops
                calls[key] = _failed(f"GET {key[1]}: no complete answer within {bound_s:.1f} s")

    def get(self, spec: FetchSpec, url: str) -> list[dict[str, str]]:
        """``GET url`` with its deadline, cap and retries; the results, or :class:`FetchError`."""
        return self._loop.submit(self._get(spec, url, self._limit(spec))).result()

    async def _get(
        self, spec: FetchSpec, url: str, limit: asyncio.Semaphore
    ) -> list[dict[str, str]]:
        headers = {
            name: ENV_REFERENCE.sub(lambda m: self._secrets[m[1]], value)
            for name, value in spec.headers.items()
        }
        problem = ""
        for delay_s in self._delays(spec.retries):
            await asyncio.sleep(delay_s)
            try:
                async with limit:
                    body = await get_body(
                        self._client,
                        url,
                        headers=headers,
                        timeout_s=spec.timeout_s,
                        max_body_bytes=spec.max_body_bytes,
                    )
            except RetriableFetchError as e:
                problem = str(e)
                continue
            except FetchError as e:
                raise FetchError(f"GET {url}: {e}") from None
            return parse_results(spec.returns, body, url)
        tries = spec.retries + 1
        raise FetchError(f"GET {url}: {problem} (after {tries} attempt{'s' * (tries > 1)})")

    def worst_case_s(self, spec: FetchSpec) -> float:
        """The longest one call of ``spec`` can take, retries and backoff included."""
        return (spec.retries + 1) * spec.timeout_s + sum(self._delays(spec.retries)) + 0.5

    def close(self) -> None:
        """Cancel the calls still running; close the HTTP client unless it was given."""
        self._loop.close(self._client.aclose() if self._owns_client else None)

    def _limit(self, spec: FetchSpec) -> asyncio.Semaphore:
        """The calling watcher's limit of calls in flight to the service of ``spec``."""
        limits: dict[str, asyncio.Semaphore] | None = getattr(self._local, "limits", None)
        if limits is None:
            limits = self._local.limits = {}
        origin = _origin(spec.url)
        if origin not in limits:
            limits[origin] = asyncio.Semaphore(self.options.max_concurrency)
        return limits[origin]

    def _delays(self, retries: int) -> list[float]:
        """0 before the first try, then doubling delays up to the cap."""
        first, cap = self.options.backoff_first_s, self.options.backoff_cap_s
        return [0.0] + [min(cap, first * 2.0**i) for i in range(retries)]


@functools.lru_cache(maxsize=1024)
def _origin(url: str) -> str:
    """``scheme://host:port`` of a fetch URL (fixed text: checked when the config loads)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{re.split(r'[/?#]', rest, maxsplit=1)[0].lower()}"


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

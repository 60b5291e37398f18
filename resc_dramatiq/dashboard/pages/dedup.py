"""Dedup sets: size, oldest entry and its age, entries past the make entry's ``ttl_s``,
a search for a task, and the entries a page at a time.

Every read is bounded whatever the set's size: ``ZCARD``, ``ZCOUNT`` and ``ZSCORE`` are
O(log n) or better, a page is one ``ZRANGE`` by rank (or by score for the entries past
their time to live), and a substring search ``ZSCAN``s at most :data:`SEARCH_SCAN`
entries per request, saying where to go on.

A set is addressed only when a set template of the watcher renders its name, a template
that is not only variables (``${q}`` could name any sorted set: such templates are listed
as dynamic, their sets never shown), and when it is none of the routers' own keys; a key
of another type shows what it holds, and nothing else.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.odd_keys import odd_types
from ...ops.target_status import is_dynamic
from ...store.keys import own_key
from ...store.keyspace import names_of
from ..context import Context, named_by, now_s
from ..render import int_param
from ..site import WatcherSite

#: Most entries one substring search looks at.
SEARCH_SCAN = 20_000
#: Most sets listed per set template.
MAX_SETS = 50


@dataclass(frozen=True, slots=True)
class SetView:
    """One concrete dedup set."""

    key: str
    template: str
    size: int
    oldest: tuple[bytes, float] | None  # entry, score (unix seconds)
    ttl_s: int | None
    past_ttl: int | None  # entries older than ttl_s (None: no ttl_s)
    problem: str | None = None  # the key holds another type: what (no figure read)


def set_templates(w: WatcherSite) -> dict[str, int | None]:
    """Set template source -> its make entry's ``ttl_s`` (the first one given)."""
    found: dict[str, int | None] = {}
    for rule in w.rules.rules:
        for make in rule.makes:
            if make.set is not None and found.get(make.set.source) is None:
                found[make.set.source] = make.ttl_s
    return found


def set_view(
    client: redis.Redis, key: str, template: str, ttl_s: int | None, now: float
) -> SetView:
    """The figures of one set, each read in O(log n)."""
    odd = odd_types(client, {key: "zset"})
    if odd:
        return SetView(key, template, 0, None, ttl_s, None, "; ".join(map(str, odd)))
    first: list[Any] = client.zrange(key, 0, 0, withscores=True)
    past = None if ttl_s is None else int(client.zcount(key, "-inf", f"({now - ttl_s}"))
    return SetView(
        key=key,
        template=template,
        size=int(client.zcard(key)),
        oldest=(first[0][0], float(first[0][1])) if first else None,
        ttl_s=ttl_s,
        past_ttl=past,
    )


def _sets(context: Context, w: WatcherSite, now: float) -> tuple[list[SetView], list[str]]:
    """The sets of ``w``'s templates (the first :data:`MAX_SETS` of each), and the
    templates that are only variables (never scanned)."""
    views: list[SetView] = []
    dynamic: list[str] = []
    rules = {m.set.source: m.set for r in w.rules.rules for m in r.makes if m.set is not None}
    specs = context.site.ruleset.config.spec.watchers
    for source, ttl_s in set_templates(w).items():
        if is_dynamic(rules[source]):
            dynamic.append(source)
            continue
        found = (n for n in names_of(w.client, rules[source]) if not own_key(n, specs))
        names = sorted(itertools.islice(found, MAX_SETS))
        views += [set_view(w.client, n, source, ttl_s, now) for n in names]
    return views, dynamic


def set_template_of(context: Context, w: WatcherSite, key: str) -> tuple[str, int | None]:
    """The template and ``ttl_s`` of the set ``key``; 404 when no set template names it,
    when only a template of variables alone does, or when it is a key of the routers."""
    rules = {m.set.source: m.set for r in w.rules.rules for m in r.makes if m.set is not None}
    if not own_key(key, context.site.ruleset.config.spec.watchers):
        for source, ttl_s in set_templates(w).items():
            if not is_dynamic(rules[source]) and named_by(key, [rules[source]]):
                return source, ttl_s
    raise HTTPException(404, "no such dedup set among this watcher's rules")


def _search(client: redis.Redis, key: str, term: str, cursor: int, limit: int) -> dict[str, Any]:
    """Entries containing ``term``: the exact one first, then a bounded ``ZSCAN``."""
    exact = client.zscore(key, term)
    found: list[tuple[bytes, float]] = []
    looked = 0
    needle = term.encode()
    while looked < SEARCH_SCAN and len(found) < limit:
        reply: Any = client.zscan(key, cursor, count=1000)
        cursor, entries = int(reply[0]), reply[1]
        looked += max(1, len(entries))
        found += [(m, float(s)) for m, s in entries if needle in m and m != needle]
        if cursor == 0:
            break
    return {"exact": exact, "found": found[:limit], "cursor": cursor, "looked": looked}


def routes(context: Context) -> list[Route]:
    """``/dedup`` and ``/watchers/{index}/set?key=``."""

    def listing(request: Request) -> Response:
        watchers = []
        for i, w in enumerate(context.site.watchers):
            now = now_s(w.client)
            sets, dynamic = _sets(context, w, now)
            watchers.append(
                {"index": i, "watcher": w, "sets": sets, "dynamic": dynamic, "now_s": now}
            )
        return context.renderer.page(request, "dedup.html", {"watchers": watchers})

    def one(request: Request) -> Response:
        index, w = context.watcher(request)
        key = request.query_params.get("key", "")
        template, ttl_s = set_template_of(context, w, key)
        now = now_s(w.client)
        offset, size = int_param(request, "offset"), context.settings.page_size
        cursor = int_param(request, "cursor")
        past = request.query_params.get("past") == "1" and ttl_s is not None
        view = set_view(w.client, key, template, ttl_s, now)
        term = request.query_params.get("q", "") if view.problem is None else ""
        entries: list[Any]
        if view.problem is not None:
            entries = []
        elif past and ttl_s is not None:
            cutoff = f"({now - ttl_s}"
            entries = client_range_by_score(w.client, key, cutoff, offset, size)
        else:
            entries = list(w.client.zrange(key, offset, offset + size - 1, withscores=True))
        search = _search(w.client, key, term, cursor, size) if term else None
        values = {
            "index": index,
            "watcher": w,
            "view": view,
            "entries": [(m, float(s)) for m, s in entries],
            "offset": offset,
            "past": past,
            "term": term,
            "search": search,
            "now_s": now,
        }
        return context.renderer.page(request, "set.html", values)

    return [
        Route("/dedup", listing, name="dedup"),
        Route("/watchers/{index:int}/set", one, name="set"),
    ]


def client_range_by_score(
    client: redis.Redis, key: str, cutoff: str, offset: int, count: int
) -> list[Any]:
    """Entries scored below ``cutoff``, oldest first, ``count`` from ``offset``."""
    found: list[Any] = client.zrangebyscore(
        key, "-inf", cutoff, start=offset, num=count, withscores=True
    )
    return found

"""The dashboard's actions: requeue or drop dead letters and dead Dramatiq messages,
remove a dedup entry, complete or drop a join group. Each is a POST, and each goes
through two steps:

1. the form's POST (CSRF token checked, refused on a read-only dashboard) answers with a
   confirmation page saying what would be done, to how many, and listing them;
2. its confirmation (the same fields and ``confirmed=1``) does it with the library
   functions of :mod:`resc_dramatiq.ops` (each entry moved atomically) and redirects to
   the page it came from, saying what was done.

A selection names entries by their exact bytes, as hex: an event that is not UTF-8 is
addressed exactly. ``do`` is ``<action>:<scope>``, the scope ``selected`` (the checked
rows), ``all``, or one row's hex (a join group: its name's).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import RuleError
from ..ops import dead, dramatiq_dead
from ..ops.dead import ALL
from ..ops.odd_keys import odd_types
from ..rules.plan import Planner
from ..store.join_ops import GroupNotOpen, close_group, planned
from .context import Context
from .long_values import cut, resolve
from .pages.dedup import set_template_of
from .pages.joins import group_of
from .pages.targets import dramatiq_queue
from .render import field, fields, read_form
from .security import action_refusal

#: Entries listed by name on a confirmation page.
SHOWN = 20


@dataclass(frozen=True, slots=True)
class Plan:
    """What a confirmed action will do."""

    title: str  # "Requeue 3 dead letters of in"
    items: tuple[str, ...]  # the first entries, as text
    back: str  # the page to return to
    run: Callable[[], str]  # does it; returns what was done, as a notice


def _hex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise HTTPException(400, "malformed entry") from None


def _past(action: str) -> str:
    """``requeued``, ``dropped``: what a notice says was done."""
    return {"drop": "dropped"}.get(action, f"{action}d")


def _do(form: list[tuple[str, str]], actions: tuple[str, ...]) -> tuple[str, str]:
    action, _, scope = field(form, "do").partition(":")
    if action not in actions or not scope:
        raise HTTPException(400, "unknown action")
    return action, scope


def _dead_plan(context: Context, request: Request, form: list[tuple[str, str]]) -> Plan:
    index, w = context.watcher(request)
    action, scope = _do(form, ("requeue", "drop"))
    back = f"/watchers/{index}"
    move = dead.requeue if action == "requeue" else dead.drop
    if scope == "all":
        size = int(w.client.llen(w.keys.dead))
        title = f"{action.title()} all {size} dead letters of {w.input}"
        return Plan(title, (), back, lambda: f"{move(w.client, w.keys, ALL)} {_past(action)}")
    chosen = fields(form, "entry") if scope == "selected" else [scope]
    if not chosen:
        raise HTTPException(400, "nothing selected")
    found = [resolve(w.client, w.keys.dead, ref) for ref in chosen]
    letters = [dead.parse(entry) for entry in found if entry is not None]  # None: gone
    title = f"{action.title()} {len(letters)} dead letters of {w.input}"
    items = tuple(cut(letter.text) for letter in letters[:SHOWN])
    return Plan(title, items, back, lambda: f"{move(w.client, w.keys, letters)} {_past(action)}")


def _messages_plan(context: Context, request: Request, form: list[tuple[str, str]]) -> Plan:
    index, w = context.watcher(request)
    queue = dramatiq_queue(context, w, request.query_params.get("name", ""))
    action, scope = _do(form, ("requeue", "drop"))
    back = f"/watchers/{index}/queue?name={quote(queue)}"
    ns = context.site.namespace
    move = dramatiq_dead.requeue_messages if action == "requeue" else dramatiq_dead.drop_messages

    def done(ids: Any) -> Callable[[], str]:
        def run() -> str:
            moved = move(w.client, ns, queue, ids)
            skipped = f", {moved.skipped} skipped" if moved.skipped else ""
            return f"{moved.moved} {_past(action)}{skipped}"

        return run

    if scope == "all":
        size = int(w.client.zcard(context.site.dramatiq.dead(queue)))
        return Plan(f"{action.title()} all {size} dead messages of {queue}", (), back, done(ALL))
    ids = fields(form, "id") if scope == "selected" else [scope]
    if not ids:
        raise HTTPException(400, "nothing selected")
    title = f"{action.title()} {len(ids)} dead messages of {queue}"
    return Plan(title, tuple(ids[:SHOWN]), back, done(ids))


def _dedup_plan(context: Context, request: Request, form: list[tuple[str, str]]) -> Plan:
    index, w = context.watcher(request)
    key = request.query_params.get("key", "")
    set_template_of(context, w, key)  # 404 unless a set template names it
    odd = odd_types(w.client, {key: "zset"})
    if odd:
        raise HTTPException(409, f"nothing removed: {odd[0]}")
    _, scope = _do(form, ("remove",))
    members = [_hex(h) for h in (fields(form, "member") if scope == "selected" else [scope])]
    if not members:
        raise HTTPException(400, "nothing selected")
    back = f"/watchers/{index}/set?key={quote(key)}"
    items = tuple(cut(m.decode("utf-8", "replace")) for m in members[:SHOWN])

    def run() -> str:
        return f"{w.client.zrem(key, *members)} removed"

    return Plan(f"Remove {len(members)} entries from dedup set {key}", items, back, run)


def _join_plan(context: Context, request: Request, form: list[tuple[str, str]]) -> Plan:
    """Complete (its make fired now, from its first member) or drop a join group of the
    watcher's join rules, in one atomic step; 409 when the group is not open, was closed
    meanwhile, or its make cannot be made."""
    _, w = context.watcher(request)
    action, hex_name = _do(form, ("complete", "drop"))
    try:
        name = _hex(hex_name).decode()
    except UnicodeDecodeError:
        raise HTTPException(400, "malformed group") from None
    group = group_of(w, name)
    planner = Planner(w.rules)
    items: tuple[str, ...] = ("nothing is queued; its late members will do nothing",)
    try:
        if group.state != "open":
            raise GroupNotOpen(f"group {name!r} is not open: it is {group.state}")
        if action == "complete":
            items = tuple(cut(f"{t.task.decode()} to {t.queue}") for t in planned(planner, group))
    except (GroupNotOpen, RuleError) as e:
        raise HTTPException(409, f"nothing done: {e}") from None
    title = f"{action.title()} join group {cut(name)} of rule {cut(group.rule or '-')}"
    channel = context.site.ruleset.config.spec.listener_channel

    def run() -> str:
        try:
            closed = close_group(
                w.client, planner, name, "complete" if action == "complete" else "drop",
                dramatiq=context.site.dramatiq, channel=channel,
            )  # fmt: skip
        except (GroupNotOpen, RuleError) as e:
            raise HTTPException(409, f"nothing done: {e}") from None
        queued = f": {closed.queued} queued" if action == "complete" else ""
        return f"group {cut(name, 200)} {_past(action)}{queued}"

    return Plan(title, items, "/joins", run)


def routes(context: Context) -> list[Route]:
    """The POST routes of the actions."""

    def endpoint(plan_of: Callable[[Context, Request, list[tuple[str, str]]], Plan]) -> Any:
        async def act(request: Request) -> Response:
            try:
                form = await read_form(request)
            except (ValueError, binascii.Error):
                raise HTTPException(413, "form too large") from None
            refused = action_refusal(
                request.headers, field(form, "csrf"), context.csrf,
                read_only=context.settings.read_only, hosts=context.hosts,
            )  # fmt: skip
            if refused is not None:
                return context.renderer.page(request, "refused.html", {"why": refused}, 403)
            plan = await run_in_threadpool(plan_of, context, request, form)
            if field(form, "confirmed") != "1":
                hidden = [(k, v) for k, v in form if k not in ("csrf", "confirmed")]
                url = request.url
                target = url.path + (f"?{url.query}" if url.query else "")
                values = {"plan": plan, "hidden": hidden, "action": target}
                return context.renderer.page(request, "confirm.html", values)
            notice = await run_in_threadpool(plan.run)
            sep = "&" if "?" in plan.back else "?"
            return RedirectResponse(f"{plan.back}{sep}{urlencode({'notice': notice})}", 303)

        return act

    return [
        Route("/watchers/{index:int}/dead", endpoint(_dead_plan), methods=["POST"]),
        Route("/watchers/{index:int}/queue/dead", endpoint(_messages_plan), methods=["POST"]),
        Route("/watchers/{index:int}/set/remove", endpoint(_dedup_plan), methods=["POST"]),
        Route("/joins/{index:int}/group", endpoint(_join_plan), methods=["POST"]),
    ]

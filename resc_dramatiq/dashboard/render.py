"""Pages as HTML: one Jinja2 environment (autoescaped), the navigation, forms read back.

A page is rendered whole, or only its ``<main>`` when asked with ``?partial=1`` (what the
live refresh fetches). Every value from Redis reaches a template as text and is escaped
there; the templates never mark anything safe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..rules.patterns import decode_event
from .long_values import cut, entry_ref, is_long

HERE = Path(__file__).parent

#: The navigation: (path, title).
NAV = (
    ("/pipeline", "Pipeline"),
    ("/watchers", "Watchers"),
    ("/targets", "Targets"),
    ("/dedup", "Dedup sets"),
    ("/processes", "Processes"),
    ("/schedules", "Schedules"),
    ("/joins", "Joins"),
    ("/why", "Why"),
)

#: The largest offset or cursor a page takes (far past any list; Redis's own limit is
#: 2**63 - 1, which an offset plus a page would overflow).
MAX_INT_PARAM = 10**15

#: Most bytes of a form body read (a page of selected entries fits many times).
MAX_FORM_BYTES = 4 * 1024 * 1024


def _age(seconds: float | None) -> str:
    """``12s``, ``5m 3s``, ``2h 10m``, ``3d 4h``; ``-`` for none."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit} {(s % size) // sub_size}{sub}"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def _lag(seconds: float | None) -> str:
    """A lag: ``532 ms`` under 10 s, else as an age (``55m 28s``); ``-`` for none."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else _age(seconds)


def _deadline(in_s: float | None) -> str:
    """When a deadline falls: ``in 9m 48s``, ``overdue 2s``; ``-`` for none."""
    if in_s is None:
        return "-"
    return f"overdue {_age(-in_s)}" if in_s < 0 else f"in {_age(in_s)}"


def _hex_name(name: str) -> str:
    """A name as the hex of its UTF-8 bytes: how a form addresses it exactly."""
    return name.encode().hex()


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _text(value: bytes | str) -> str:
    """Bytes from Redis as text, undecodable bytes replaced (escaped by the template)."""
    return decode_event(value) if isinstance(value, bytes) else value


def _json(value: object) -> str:
    """Arguments as JSON text (a plain string: the template escapes it like any other)."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def environment() -> Environment:
    """The templates' environment: every value escaped, unknown names an error."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_age, lag=_lag, utc=_utc, text=_text, json=_json, cut=cut, ref=entry_ref)
    env.filters.update(deadline=_deadline, hexname=_hex_name)
    env.tests.update(long=is_long)
    return env


class Renderer:
    """Renders the pages of one app."""

    def __init__(self, *, read_only: bool, csrf: str, refresh_s: float, page_size: int) -> None:
        self.env = environment()
        self.common = {
            "nav": NAV,
            "read_only": read_only,
            "csrf": csrf,
            "refresh_s": refresh_s,
            "page_size": page_size,
        }

    def page(
        self, request: Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> HTMLResponse:
        """``template`` with ``context``; only its main part when ``?partial=1``."""
        values = {
            **self.common,
            **context,
            "path": request.url.path,
            "notice": request.query_params.get("notice", ""),
            "partial": request.query_params.get("partial") == "1",
            "live": request.method == "GET",  # an action's answer is never refreshed
        }
        return HTMLResponse(self.env.get_template(template).render(values), status_code=status)


async def read_form(request: Request) -> list[tuple[str, str]]:
    """The fields of an url-encoded form body, in order (repeated names kept)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ValueError("form too large")
    return parse_qsl(body.decode("ascii", "replace"), keep_blank_values=True)


def field(form: list[tuple[str, str]], name: str, default: str = "") -> str:
    """The first value of ``name`` in ``form``."""
    return next((v for k, v in form if k == name), default)


def fields(form: list[tuple[str, str]], name: str) -> list[str]:
    """Every value of ``name`` in ``form``, in order."""
    return [v for k, v in form if k == name]


def int_param(request: Request, name: str, default: int = 0) -> int:
    """A whole-number query parameter (ASCII digits, at most :data:`MAX_INT_PARAM`);
    ``default`` when absent or empty; anything else answers 400."""
    value = request.query_params.get(name, "")
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_INT_PARAM)):
        raise HTTPException(400, f"{name} must be a whole number from 0 to {MAX_INT_PARAM}")
    number = int(value)
    if number > MAX_INT_PARAM:
        raise HTTPException(400, f"{name} must be a whole number from 0 to {MAX_INT_PARAM}")
    return number

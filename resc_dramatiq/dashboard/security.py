"""Who may see the dashboard and what a request may do.

* **Host**: every request must name an allowed host (:mod:`.hosts`), token or not:
  a page that reaches the dashboard through DNS rebinding names its own.
* **Access**: with an access token set, a request carries it as ``?token=`` (answered
  with a cookie and a redirect that drops it from the address), the cookie, or an
  ``Authorization: Bearer`` header (the cookie header read as browsers write it, by
  Starlette's parser); with a password set, as HTTP basic auth (any user
  name). Either one is enough when both are set; neither set: no check.
* **Actions**: every POST carries the per-process CSRF token the pages put in their
  forms, a browser's ``Sec-Fetch-Site`` must not name another site and its ``Origin``
  must name an allowed host. A read-only dashboard refuses every POST.
* **Redirects** go to paths of the dashboard's own, never to another site.
* **Headers**: a Content-Security-Policy without inline scripts or styles, no framing,
  no referrer to other sites, no caching, no MIME sniffing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .hosts import AllowedHosts

COOKIE = "resc_dashboard_token"

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null"
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def same(a: str, b: str) -> bool:
    """Constant-time equality of two secrets."""
    return hmac.compare_digest(a.encode(), b.encode())


def own_path(path: str) -> str:
    """``path`` as a redirect's ``Location`` that stays on this site: one leading slash
    (``//evil.example/`` and ``/\\evil.example/`` name another site), the rest encoded."""
    return "/" + quote(path.lstrip("/\\"), safe="/")


class Guard:
    """ASGI middleware: host and access checks, security headers on every response."""

    def __init__(
        self, app: ASGIApp, *, hosts: AllowedHosts, token: str | None, password: str | None
    ) -> None:
        self.app, self.hosts, self.token, self.password = app, hosts, token, password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.hosts.allows(headers.get("host", "")):
            await _plain(send, 400, b"400: Host not allowed (see --allowed-host)\n", {})
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if self.token is not None and same(query.get("token", ""), self.token):
            await self._enter(scope, query, send)
            return
        if not self.allowed(headers):
            await _plain(send, 401, b"authentication required\n", self._challenge())
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.decode() not in HEADERS]
                raw += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, secured)

    def allowed(self, headers: Headers) -> bool:
        """Whether the request carries the token or the password (or none is asked)."""
        if self.token is None and self.password is None:
            return True
        auth = headers.get("authorization", "")
        if self.token is not None:
            sent = cookie_parser(headers.get("cookie", "")).get(COOKIE, "")
            if same(sent, self.token) or same(auth, f"Bearer {self.token}"):
                return True
        if self.password is not None and auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return same(decoded.partition(":")[2], self.password)
        return False

    def _challenge(self) -> Mapping[str, str]:
        if self.password is None:
            return {}
        return {"www-authenticate": 'Basic realm="resc-dramatiq dashboard", charset="UTF-8"'}

    async def _enter(self, scope: Scope, query: dict[str, str], send: Send) -> None:
        """The token in the address: set the cookie, redirect to the address without it."""
        rest = urlencode({k: v for k, v in query.items() if k != "token"})
        location = own_path(scope["path"]) + (f"?{rest}" if rest else "")
        cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await _plain(send, 303, b"", {"location": location, "set-cookie": cookie})


async def _plain(send: Send, status: int, body: bytes, extra: Mapping[str, str]) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(k.encode(), v.encode()) for k, v in {**HEADERS, **extra}.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def action_refusal(
    headers: Headers, form_token: str, csrf: str, *, read_only: bool, hosts: AllowedHosts
) -> str | None:
    """Why a POST is refused (None: it may act)."""
    if read_only:
        return "this dashboard is read-only"
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "cross-site request refused"
    origin = headers.get("origin")  # chosen by the page: compared with our names, not Host
    if origin is not None and not hosts.allows_origin(origin):
        return "request from another origin refused"
    if not same(form_token, csrf):
        return "missing or wrong CSRF token (reload the page)"
    return None

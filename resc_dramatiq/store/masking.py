"""Redis URLs printed without their secrets: :func:`safe_url` and :func:`scrub`.

A URL may be malformed (that is often why it is printed: in an error), so the masking
reads it no single way but covers every reading a parser could make:

* the user info runs from ``://`` to the LAST ``@`` (a password may hold ``/``, ``?``,
  ``#``, ``:`` or ``@``); the user name before its first ``:`` is kept, everything
  after it masked (all of it when there is no ``:``);
* the value of every query option whose name ends in ``password``, ``token`` or
  ``secret`` (``password``, ``ssl_password``, ``sentinel_password``...), wherever a
  ``?``, ``&`` or ``;`` starts one, up to the next ``&`` that starts another
  ``name=value`` option.

Where the readings overlap, their union is masked: more hidden, never less.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

#: The endings of a query option's name that make its value a secret.
SECRET_ENDINGS = ("password", "token", "secret")

MASK = "***"

_OPTION = re.compile(r"[?&;](?P<name>[^?&;=]*)=(?P<value>[^&]*(?:&[^&=]*(?=&|$))*)")


def is_secret_option(name: str) -> bool:
    """True when a query option called ``name`` (percent-encoded or not) holds a secret."""
    return unquote_plus(name).strip().lower().endswith(SECRET_ENDINGS)


def safe_url(url: str) -> str:
    """``url`` with its password and secret query options replaced by ``***``."""
    spans = _merged(_secret_spans(url))
    out, at = [], 0
    for start, end in spans:
        out += [url[at:start], MASK]
        at = end
    out.append(url[at:])
    return "".join(out)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with ``url`` and each of its secrets, as
    written or percent-decoded, replaced: for messages that may quote the URL."""
    text = text.replace(url, safe_url(url))
    secrets = {form for s in _secrets(url) for form in (s, unquote(s), unquote_plus(s)) if form}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _secrets(url: str) -> list[str]:
    return [url[start:end] for start, end in _merged(_secret_spans(url))]


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where ``url``'s secrets are, as (start, end) offsets, possibly overlapping."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    spans = []
    at = url.rfind("@")
    if at >= start:
        colon = url.find(":", start, at)
        spans.append((colon + 1 if colon >= 0 else start, at))
    for option in _OPTION.finditer(url, start):
        if is_secret_option(option["name"]):
            spans.append(option.span("value"))
    return [(a, b) for a, b in spans if b > a]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans joined, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged

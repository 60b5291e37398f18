"""What a fetcher's answer means: JSON objects whose top-level fields become variables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import FetchError

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


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

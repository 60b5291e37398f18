"""Paths inside a config: resc's layouts versus the model, legacy keys, root causes.

The model spells every rule one way (``on`` a string, ``make`` a list); resc's files
spell it several (``on.done``, ``todo``, one ``make`` object). These helpers map the
model's paths back to the file's, so that every message points where the user looks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

#: Keys older resc versions accepted that this package ignores with a warning.
LEGACY_KEYS = {
    "task_set": "set",
    "redis_url": "redis.url",
}

#: Keys whose values are more configuration; legacy keys are looked for there only
#: (a message's ``kwargs`` or ``options`` may use any name).
STRUCTURAL_KEYS = {"watchers", "rules", "make", "todo", "fetch", "redis"}


def rewrite(path: str, aliases: Mapping[str, str]) -> str:
    """``path`` with its longest prefix found in ``aliases`` replaced."""
    for probe in ancestors(path):
        if probe in aliases:
            return aliases[probe] + path[len(probe) :]
    return path


def ancestors(path: str) -> list[str]:
    """``a[0].b``, ``a[0]``, ``a``: the path and its parents, longest first."""
    found = []
    while path:
        found.append(path)
        parent = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path)
        path = "" if parent == path else parent
    return found


def layout_aliases(data: Mapping[str, Any]) -> dict[str, str]:
    """Model paths -> file paths where a resc layout differs from the model's."""
    aliases: dict[str, str] = {}
    for w, watcher in _dict_items(data, "watchers"):
        for r, rule in _dict_items(watcher, "rules"):
            aliases.update(_rule_aliases(rule, f"watchers[{w}].rules[{r}]"))
    return aliases


def _dict_items(data: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    value = data.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _rule_aliases(rule: Mapping[str, Any], path: str) -> dict[str, str]:
    """Mirror of :meth:`RuleSpec._resc_layouts`: ``on.done``, ``todo``, one ``make``."""
    aliases = {}
    on = rule.get("on")
    if isinstance(on, dict) and set(on) == {"done"}:
        aliases[f"{path}.on"] = f"{path}.on.done"
    key = "todo" if "todo" in rule and "make" not in rule else "make"
    if key == "todo":
        aliases[f"{path}.make"] = f"{path}.todo"
    if isinstance(rule.get(key), dict):
        aliases[f"{path}.make[0]"] = f"{path}.{key}"
    return aliases


def root_causes(error: ValidationError) -> list[Any]:
    """The errors, without "too short" ones caused by an invalid item inside."""
    errors = error.errors()
    locs = [tuple(err["loc"]) for err in errors]

    def caused_inside(loc: tuple[Any, ...]) -> bool:
        return any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)

    return [err for err in errors if not (err["type"] == "too_short" and caused_inside(err["loc"]))]


def format_path(loc: tuple[Any, ...]) -> str:
    """``('watchers', 0, 'rules')`` -> ``watchers[0].rules``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def strip_legacy(data: Any, path: str = "") -> tuple[Any, list[tuple[str, str]]]:
    """``data`` without legacy keys, and the path and hint of each one removed."""
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in LEGACY_KEYS:
                found.append((sub, f"use {LEGACY_KEYS[key]!r}"))
                continue
            if key in STRUCTURAL_KEYS:
                value, more = strip_legacy(value, sub)
                found += more
            out[key] = value
        return out, found
    if isinstance(data, list):
        items = []
        for i, value in enumerate(data):
            item, more = strip_legacy(value, f"{path}[{i}]")
            items.append(item)
            found += more
        return items, found
    return data, found

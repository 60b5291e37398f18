"""Rules configuration: loading, resc layouts, validation into frozen models.

Both resc generations load unchanged:

* seed era: ``watchers[].redis.url``, ``rules[].on.done`` and ``rules[].todo``;
* resc 0.3.x: top-level ``redis.url``, ``listener_channel``, ``on`` as a string,
  ``make`` as one object or a list, ``fetch``, and resc's defaults.

Files are JSON, Hjson, YAML or TOML, picked by extension. Every problem names the
file, the path inside it (``watchers[0].rules[1].make[0].task``) and, for JSON and
YAML, the line.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import hjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ANONYMOUS_RULE = "<anonymous rule>"
INPUT_TASK = "${input_task}"

#: Keys older resc versions accepted that this package ignores with a warning.
LEGACY_KEYS = {
    "task_set": "set",
    "redis_url": "redis.url",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RedisSettings(_Model):
    """Where the Redis server is."""

    url: str = DEFAULT_REDIS_URL


class FetchSpec(_Model):
    """An HTTP call whose JSON fields become ``<returns>.<field>`` variables."""

    url: str
    returns: str = Field(pattern=r"^\w+$")
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=2, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)


class MakeSpec(_Model):
    """One task a rule makes: a raw list push (resc) or a Dramatiq message (``actor``)."""

    task: str = INPUT_TASK
    queue: str | None = None
    set: str | None = None
    actor: str | None = None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    delay_ms: int | None = Field(default=None, ge=0, le=7 * 24 * 3600 * 1000)
    options: dict[str, Any] = Field(default_factory=dict)
    release: Literal["taken", "done"] = "taken"
    ttl_s: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _raw_needs_queue(self) -> MakeSpec:
        if self.actor is None:
            if self.queue is None:
                raise ValueError("a raw make entry needs 'queue' (or 'actor' for Dramatiq)")
            dramatiq_only = [
                k for k in ("args", "kwargs", "delay_ms") if getattr(self, k) is not None
            ]
            if dramatiq_only or self.options:
                names = ", ".join(dramatiq_only + (["options"] if self.options else []))
                raise ValueError(f"{names} only apply to an 'actor' target")
        return self


class RuleSpec(_Model):
    """A regex over events and what to make when it matches."""

    name: str = ANONYMOUS_RULE
    on: str
    fetch: tuple[FetchSpec, ...] = ()
    make: tuple[MakeSpec, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _resc_layouts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        on = data.get("on")
        if isinstance(on, dict) and set(on) == {"done"}:  # seed era: "on": {"done": regex}
            data["on"] = on["done"]
        if "todo" in data and "make" not in data:  # seed era: "todo" is one make entry
            data["make"] = data.pop("todo")
        if isinstance(data.get("make"), dict):
            data["make"] = [data["make"]]
        return data


class WatcherSpec(_Model):
    """One input list, its bookkeeping lists and its rules."""

    redis: RedisSettings | None = None
    input_queue: str = Field(min_length=1)
    taken_queue: str = ""
    dead_queue: str = ""
    unmatched_queue: str | None = None
    max_attempts: int = Field(default=3, ge=1)
    rules: tuple[RuleSpec, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("input_queue"), str):
            data = dict(data)
            data.setdefault("taken_queue", f"{data['input_queue']}/taken")
            data.setdefault("dead_queue", f"{data['input_queue']}/dead")
        return data


class ConfigSpec(_Model):
    """The whole file."""

    redis: RedisSettings | None = None
    listener_channel: str | None = None
    namespace: str = "dramatiq"
    watchers: tuple[WatcherSpec, ...] = Field(min_length=1)


class Config:
    """A validated configuration and where it came from.

    ``locate(path)`` turns a path inside the file into ``file:line: path`` for messages.
    """

    def __init__(
        self,
        spec: ConfigSpec,
        *,
        source: str = "<config>",
        lines: Mapping[str, int] | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.source = source
        self.warnings = warnings
        self._lines = dict(lines or {})

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read, parse and validate a config file; raise :class:`ConfigError`."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
        return cls.from_text(text, source=str(path), fmt=_format_of(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<config>", fmt: str = "json") -> Config:
        """Parse ``text`` in format ``fmt`` (json, hjson, yaml, toml) and validate it."""
        data = _parse(text, fmt, source)
        lines = _line_map(text, fmt)
        return cls.from_data(data, source=source, lines=lines)

    @classmethod
    def from_data(
        cls, data: Any, *, source: str = "<config>", lines: Mapping[str, int] | None = None
    ) -> Config:
        """Validate already parsed data."""
        lines = dict(lines or {})
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be an object with 'watchers'")
        data, legacy = _strip_legacy(data)
        where = cls(ConfigSpec.model_construct(), source=source, lines=lines)
        warnings = tuple(
            f"{where.locate(p)}: legacy resc key ignored; {hint}" for p, hint in legacy
        )
        try:
            spec = ConfigSpec.model_validate(data)
        except ValidationError as e:
            raise ConfigError([where._explain(err) for err in _root_causes(e)]) from None
        return cls(spec, source=source, lines=lines, warnings=warnings)

    def locate(self, path: str) -> str:
        """``file:line: path`` for a path inside the config (line when known)."""
        probe = path
        while probe:
            if probe in self._lines:
                return f"{self.source}:{self._lines[probe]}: {path}"
            parent = re.sub(r"(\.\w+|\[\d+\])$", "", probe)
            probe = "" if parent == probe else parent
        return f"{self.source}: {path}" if path else self.source

    def with_spec(self, spec: ConfigSpec) -> Config:
        """The same source, lines and warnings over another spec (code rules merged in)."""
        return Config(spec, source=self.source, lines=self._lines, warnings=self.warnings)

    def redis_url(self, watcher: WatcherSpec) -> str:
        """The watcher's Redis URL, else the top-level one, else the default."""
        for settings in (watcher.redis, self.spec.redis):
            if settings is not None:
                return settings.url
        return DEFAULT_REDIS_URL

    def _explain(self, err: Mapping[str, Any]) -> str:
        loc = tuple(x for x in err["loc"] if not str(x).startswith("function-after"))
        path = format_path(loc)
        if err["type"] == "extra_forbidden":
            return f"{self.locate(path)}: unknown key{_suggest(loc)}"
        message = str(err["msg"]).removeprefix("Value error, ")
        return f"{self.locate(path)}: {message}"


def _root_causes(error: ValidationError) -> list[Any]:
    """The errors, without "too short" ones caused by an invalid item inside."""
    errors = error.errors()
    locs = [tuple(err["loc"]) for err in errors]

    def caused_inside(loc: tuple[Any, ...]) -> bool:
        return any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)

    return [err for err in errors if not (err["type"] == "too_short" and caused_inside(err["loc"]))]


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: ``on``/``off``/``yes``/``no`` stay strings (resc's ``on`` key)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def format_path(loc: tuple[Any, ...]) -> str:
    """``('watchers', 0, 'rules')`` -> ``watchers[0].rules``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _suggest(loc: tuple[Any, ...]) -> str:
    known = _fields_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = ConfigSpec
    names = [str(p) for p in loc if not isinstance(p, int)]
    for name in names:
        children: dict[tuple[str, type[BaseModel]], type[BaseModel]] = {
            ("watchers", ConfigSpec): WatcherSpec,
            ("rules", WatcherSpec): RuleSpec,
            ("make", RuleSpec): MakeSpec,
            ("todo", RuleSpec): MakeSpec,
            ("fetch", RuleSpec): FetchSpec,
        }
        inner = RedisSettings if name == "redis" else children.get((name, model))
        if inner is None:
            return []
        model = inner
    extra = ["todo"] if model is RuleSpec else []
    return list(model.model_fields) + extra


def _strip_legacy(data: Any, path: str = "") -> tuple[Any, list[tuple[str, str]]]:
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in LEGACY_KEYS:
                found.append((sub, f"use {LEGACY_KEYS[key]!r}"))
                continue
            out[key], more = _strip_legacy(value, sub)
            found += more
        return out, found
    if isinstance(data, list):
        items = []
        for i, value in enumerate(data):
            item, more = _strip_legacy(value, f"{path}[{i}]")
            items.append(item)
            found += more
        return items, found
    return data, found


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {
        ".json": "json",
        ".conf": "json",
        ".hjson": "hjson",
        ".yaml": "yaml",
        ".yml": "yaml",
        ".toml": "toml",
    }
    if suffix not in formats:
        raise ConfigError(
            f"{path}: unknown config format {suffix!r}; use .json, .hjson, .yaml, .yml or .toml"
        )
    return formats[suffix]


def _parse(text: str, fmt: str, source: str) -> Any:
    try:
        if fmt == "json":
            return json.loads(text)
        if fmt == "hjson":
            return hjson.loads(text)
        if fmt == "yaml":
            return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass
        return tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{source}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})"
        ) from None
    except hjson.HjsonDecodeError as e:
        raise ConfigError(f"{source}:{e.lineno}: invalid Hjson: {e.msg}") from None
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise ConfigError(f"{source}:{line}: invalid YAML: {e.problem}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None


def _line_map(text: str, fmt: str) -> dict[str, int]:
    """Map each path in a JSON or YAML document to its 1-based line, best effort."""
    if fmt not in ("json", "yaml"):
        return {}
    try:  # JSON is YAML once tabs (legal JSON whitespace) are spaces
        root = yaml.compose(text.replace("\t", " ") if fmt == "json" else text)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[f"{path}[{i}]"] = item.start_mark.line + 1
                walk(item, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return lines

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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ANONYMOUS_RULE = "<anonymous rule>"
INPUT_TASK = "${input_task}"

#: Keys older resc versions accepted that this package ignores with a warning.
LEGACY_KEYS = {
    "task_set": "set",
    "redis_url": "redis.url",
}

#: Keys whose values are more configuration; legacy keys are looked for there only
#: (a message's ``kwargs`` or ``options`` may use any name).
STRUCTURAL_KEYS = {"watchers", "rules", "make", "todo", "fetch", "redis"}

#: Keys of a make entry that only mean something for a Dramatiq message.
DRAMATIQ_ONLY = ("args", "kwargs", "delay_ms", "options", "release")

#: Message options the router writes itself.
RESERVED_OPTIONS = {
    "redis_message_id": "the router sets it",
    "resc": "the router sets it",
    "eta": "use delay_ms",
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

    @field_validator("args", "kwargs", "options")
    @classmethod
    def _json_values_only(cls, value: Any) -> Any:
        try:  # what the router cannot encode must be refused now, not per event
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"only JSON values can go in a message: {e}") from None
        return value

    @field_validator("options")
    @classmethod
    def _no_reserved_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(options) & set(RESERVED_OPTIONS))
        if reserved:
            raise ValueError(
                "; ".join(f"{k!r} is reserved: {RESERVED_OPTIONS[k]}" for k in reserved)
            )
        return options

    @model_validator(mode="after")
    def _target_keys(self) -> MakeSpec:
        problem = _raw_problem(self) if self.actor is None else None
        if problem is not None:
            raise ValueError(problem)
        return self


def _raw_problem(make: MakeSpec) -> str | None:
    if make.queue is None:
        return "a raw make entry needs 'queue' (or 'actor' for Dramatiq)"
    given = [k for k in DRAMATIQ_ONLY if k in make.model_fields_set]
    return f"{', '.join(given)} only apply to an 'actor' target" if given else None


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
        if "todo" in data and "make" in data:
            raise ValueError("give 'make' or the seed-era 'todo', not both")
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
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.source = source
        self.warnings = warnings
        self._lines = dict(lines or {})
        self._aliases = dict(aliases or {})  # model path -> path in the file
        # shown paths keep the model's "make[0]" for a single make object, but not its
        # names for the keys it renames (todo, on.done)
        self._renames = {m: f for m, f in self._aliases.items() if f != m.removesuffix("[0]")}

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
        try:
            data, legacy = _strip_legacy(data)
            aliases = _layout_aliases(data)
            spec = ConfigSpec.model_validate(data)
        except ValidationError as e:
            where = cls(ConfigSpec.model_construct(), source=source, lines=lines, aliases=aliases)
            raise ConfigError([where._explain(err) for err in _root_causes(e)]) from None
        except RecursionError:  # a YAML alias that contains itself
            raise ConfigError(f"{source}: the document nests too deeply") from None
        found = cls(spec, source=source, lines=lines)  # legacy paths are file paths already
        warnings = tuple(
            f"{found.locate(p)}: legacy resc key ignored; {hint}" for p, hint in legacy
        )
        return cls(spec, source=source, lines=lines, warnings=warnings, aliases=aliases)

    def locate(self, path: str) -> str:
        """``file:line: path`` for a path of the model (line when known).

        Keys the model renames are shown as the file spells them (a seed-era ``todo`` is
        not shown as ``make[0]``); a single ``make`` object stays ``make[0]``.
        """
        shown = _rewrite(path, self._renames)
        for probe in _ancestors(_rewrite(path, self._aliases)):
            if probe in self._lines:
                return f"{self.source}:{self._lines[probe]}: {shown}"
        return f"{self.source}: {shown}" if shown else self.source

    def with_spec(self, spec: ConfigSpec) -> Config:
        """The same source, lines and warnings over another spec (code rules merged in)."""
        return Config(
            spec,
            source=self.source,
            lines=self._lines,
            warnings=self.warnings,
            aliases=self._aliases,
        )

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


def _rewrite(path: str, aliases: Mapping[str, str]) -> str:
    """``path`` with its longest prefix found in ``aliases`` replaced."""
    for probe in _ancestors(path):
        if probe in aliases:
            return aliases[probe] + path[len(probe) :]
    return path


def _ancestors(path: str) -> list[str]:
    """``a[0].b``, ``a[0]``, ``a``: the path and its parents, longest first."""
    found = []
    while path:
        found.append(path)
        parent = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path)
        path = "" if parent == path else parent
    return found


def _layout_aliases(data: Mapping[str, Any]) -> dict[str, str]:
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
                value, more = _strip_legacy(value, sub)
                found += more
            out[key] = value
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


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass


FORMAT_NAMES = {"json": "JSON", "hjson": "Hjson", "yaml": "YAML", "toml": "TOML"}

_PARSERS = {
    "json": json.loads,
    "hjson": hjson.loads,
    "yaml": _load_yaml,
    "toml": tomllib.loads,
}


def _parse(text: str, fmt: str, source: str) -> Any:
    try:
        return _PARSERS[fmt](text)
    except (ValueError, yaml.YAMLError) as e:  # the JSON, Hjson and TOML errors are ValueErrors
        raise ConfigError(f"{source}{_syntax_error(e, fmt, text)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the document nests too deeply") from None


def _syntax_error(error: Exception, fmt: str, text: str) -> str:
    """``:line: invalid <format>: what`` for a parser's exception."""
    if isinstance(error, json.JSONDecodeError | hjson.HjsonDecodeError):
        return f":{error.lineno}: invalid {FORMAT_NAMES[fmt]}: {error.msg} (column {error.colno})"
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        return f"{line}: invalid YAML: {error.problem or error.context}"
    if isinstance(error, yaml.reader.ReaderError):
        line_no = text.count("\n", 0, error.position) + 1
        return f":{line_no}: invalid YAML: {str(error).splitlines()[0]}"
    at = re.search(r" \(at line (\d+), column (\d+)\)$", str(error))  # tomllib's position
    if at is None:
        return f": invalid {FORMAT_NAMES[fmt]}: {error}"
    return f":{at[1]}: invalid {FORMAT_NAMES[fmt]}: {str(error)[: at.start()]} (column {at[2]})"


def _line_map(text: str, fmt: str) -> dict[str, int]:
    """Map each path in a JSON or YAML document to its 1-based line, best effort."""
    if fmt not in ("json", "yaml"):
        return {}
    try:  # JSON is YAML once tabs (legal JSON whitespace) are spaces
        root = yaml.compose(text.replace("\t", " ") if fmt == "json" else text)
    except (yaml.YAMLError, RecursionError):
        return {}
    lines: dict[str, int] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in seen:  # a YAML alias: its lines are those of its anchor
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[f"{path}[{i}]"] = item.start_mark.line + 1
                walk(item, f"{path}[{i}]")

    try:
        if root is not None:
            walk(root, "")
    except RecursionError:  # deeper than anyone writes by hand: messages go without lines
        return {}
    return lines

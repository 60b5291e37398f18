"""Rules configuration: loading, resc layouts, validation into frozen models.

Both resc generations load unchanged:

* seed era: ``watchers[].redis.url``, ``rules[].on.done`` and ``rules[].todo``;
* resc 0.3.x: top-level ``redis.url``, ``listener_channel``, ``on`` as a string,
  ``make`` as one object or a list, ``fetch``, and resc's defaults.

Files are JSON, Hjson, YAML or TOML, picked by extension. Every problem names the
file, the path inside it (``watchers[0].rules[1].make[0].task``) and, for JSON and
YAML, the line.

Over ~250 lines on purpose: the models of one config file are its schema, read top to
bottom; split, a rule's validation would refer across files.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import ConfigError
from .files import format_of, line_map, parse, read_text
from .joins import JoinSpec
from .makes import FrozenModel, MakeSpec
from .paths import ancestors, format_path, layout_aliases, rewrite, root_causes, strip_legacy
from .schedules import ScheduleSpec, unique_names

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MIB = 1 << 20
ANONYMOUS_RULE = "<anonymous rule>"


class RedisSettings(FrozenModel):
    """Where the Redis server is."""

    url: str = DEFAULT_REDIS_URL


class FetchSpec(FrozenModel):
    """An HTTP call whose JSON fields become ``<returns>.<field>`` variables."""

    url: str
    returns: str = Field(pattern=r"^\w+$")
    timeout_s: float = Field(default=5.0, gt=0)  # one attempt, whole answer included
    retries: int = Field(default=2, ge=0)
    max_body_bytes: int = Field(default=MIB, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)


def fixed_origin_problem(url: str) -> str | None:
    """Why ``url`` may send a call elsewhere than the config says: a ``${...}`` in its
    scheme, host or port (the rule's headers, secrets included, would go there too)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "a fetch URL starts with a fixed http:// or https://"
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "${" in authority:
        return (
            "a variable before its path (host, port, user) would let an event choose the "
            "server that receives the call and its headers; the scheme, host and port must "
            "be fixed text (variables may go in the path and the query)"
        )
    return None


class RuleSpec(FrozenModel):
    """A regex over events and what to make when it matches."""

    name: str = ANONYMOUS_RULE
    on: str
    fetch: tuple[FetchSpec, ...] = ()
    #: none only for a rule that fails a join's group (``join.fail``): a given list is
    #: never empty (defaults are not validated)
    make: Annotated[tuple[MakeSpec, ...], Field(min_length=1)] = ()
    join: JoinSpec | None = None  # see config/joins.py

    @field_validator("fetch")
    @classmethod
    def _fixed_origins(cls, fetch: tuple[FetchSpec, ...], info: ValidationInfo) -> Any:
        rule = info.data.get("name", ANONYMOUS_RULE)
        problems = [
            f"rule {rule!r}, fetch[{i}].url {spec.url!r}: {problem}"
            for i, spec in enumerate(fetch)
            if (problem := fixed_origin_problem(spec.url)) is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return fetch

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

    @model_validator(mode="after")
    def _makes_something(self) -> RuleSpec:
        if not self.make and (self.join is None or not self.join.fail):
            raise ValueError(
                "'make' is missing: a rule needs one make entry or a list of them (only "
                "a rule that fails a join's group may have none)"
            )
        if self.join is not None and self.join.fail is False and self.fetch:
            raise ValueError("a join rule cannot fetch: fetch in the rules of its members")
        return self


#: A watcher's lineage records are kept this long (s), this many at most, by default.
LINEAGE_TTL_S, LINEAGE_MAX_RECORDS = 86400, 1_000_000


class LineageSpec(FrozenModel):
    """A watcher's lineage (docs/lineage.md): its events' causes read (envelopes) and,
    unless ``records`` is false (causes and traces carried across the router, nothing
    kept), records: how long each is kept, and how many at most (the oldest are
    forgotten first)."""

    ttl_s: int = Field(default=LINEAGE_TTL_S, ge=1, le=30 * 86400)
    max_records: int = Field(default=LINEAGE_MAX_RECORDS, ge=1, le=100_000_000)
    records: bool = True


class WatcherSpec(FrozenModel):
    """One input list, its bookkeeping lists and its rules."""

    redis: RedisSettings | None = None
    input_queue: str = Field(min_length=1)
    taken_queue: str = ""
    dead_queue: str = ""
    unmatched_queue: str | None = None
    max_attempts: int = Field(default=3, ge=1)
    #: its events may be envelopes, events with a payload (see rules/data.py)
    data: bool = False
    #: its commits keep lineage records, and its events may carry their cause (envelopes)
    lineage: LineageSpec | None = None
    rules: tuple[RuleSpec, ...] = ()

    @property
    def kept_lineage(self) -> LineageSpec | None:
        """How its commits keep lineage records; None when they keep none (``lineage``
        off, or ``records: false``)."""
        return self.lineage if self.lineage is not None and self.lineage.records else None

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("lineage"), bool):
            data = dict(data)
            data["lineage"] = {} if data["lineage"] else None
        if isinstance(data, dict) and isinstance(data.get("input_queue"), str):
            data = dict(data)
            data.setdefault("taken_queue", f"{data['input_queue']}/taken")
            data.setdefault("dead_queue", f"{data['input_queue']}/dead")
        return data


class ConfigSpec(FrozenModel):
    """The whole file."""

    redis: RedisSettings | None = None
    listener_channel: str | None = None
    namespace: str = "dramatiq"
    watchers: tuple[WatcherSpec, ...] = Field(min_length=1)
    schedules: tuple[ScheduleSpec, ...] = ()  # see config/schedules.py

    _unique_schedules = field_validator("schedules")(unique_names)


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
        return cls.from_text(read_text(path), source=str(path), fmt=format_of(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<config>", fmt: str = "json") -> Config:
        """Parse ``text`` in format ``fmt`` (json, hjson, yaml, toml) and validate it."""
        data = parse(text, fmt, source)
        lines = line_map(text, fmt)
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
            data, legacy = strip_legacy(data)
            aliases = layout_aliases(data)
            spec = ConfigSpec.model_validate(data)
        except ValidationError as e:
            where = cls(ConfigSpec.model_construct(), source=source, lines=lines, aliases=aliases)
            raise ConfigError([where._explain(err) for err in root_causes(e)]) from None
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
        shown = rewrite(path, self._renames)
        for probe in ancestors(rewrite(path, self._aliases)):
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
            ("join", RuleSpec): JoinSpec,
            ("expired", JoinSpec): MakeSpec,
            ("schedules", ConfigSpec): ScheduleSpec,
            ("lineage", WatcherSpec): LineageSpec,
        }
        inner = RedisSettings if name == "redis" else children.get((name, model))
        if inner is None:
            return []
        model = inner
    extra = ["todo"] if model is RuleSpec else []
    return list(model.model_fields) + extra

"""Reading config files: format by extension, the parsers, located syntax errors, lines.

JSON, Hjson, YAML (1.2 booleans, so resc's ``on`` key stays a key) and TOML. A syntax
error names the line (and column when the parser gives it); :func:`line_map` maps each
path of a JSON or YAML document to its line, for the validation messages.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import hjson
import yaml

from ..errors import ConfigError


def read_text(path: Path) -> str:
    """The file's text: UTF-8 (a byte-order mark allowed), CRLF read as LF."""
    try:
        return path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: ``on``/``off``/``yes``/``no`` stay strings (resc's ``on`` key)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def format_of(path: Path) -> str:
    """The format of ``path``, from its extension."""
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


#: Most values a YAML document may hold once its aliases are expanded. An alias is
#: cheap to write and the config is used expanded: nine lines of aliases of aliases
#: (543 bytes) stand for hundreds of millions of values.
MAX_YAML_VALUES = 100_000


def _load_yaml(text: str) -> Any:
    loader = _YamlLoader(text)  # a SafeLoader subclass
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Raise a located YAML error when ``root`` expands to more than MAX_YAML_VALUES.

    Sizes are counted once per node (an alias is the node it names), so the check is
    linear in the document; the node named is the innermost one over the limit.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a node that contains itself: counted when it recurs
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        if total > MAX_YAML_VALUES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"its aliases expand to more than {MAX_YAML_VALUES:,} values",
                node.start_mark,
            )
        sizes[id(node)] = total
        return total

    size(root)


FORMAT_NAMES = {"json": "JSON", "hjson": "Hjson", "yaml": "YAML", "toml": "TOML"}

_PARSERS = {
    "json": json.loads,
    "hjson": hjson.loads,
    "yaml": _load_yaml,
    "toml": tomllib.loads,
}


def parse(text: str, fmt: str, source: str) -> Any:
    """``text`` parsed as ``fmt``; :class:`ConfigError` with the line on a syntax error."""
    try:
        return _PARSERS[fmt](text)
    except (ValueError, yaml.YAMLError) as e:  # the JSON, Hjson and TOML errors are ValueErrors
        raise ConfigError(f"{source}{_syntax_error(e, fmt, text)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the document nests too deeply") from None


def _syntax_error(error: Exception, fmt: str, text: str) -> str:
    """``:line: invalid <format>: what`` for a parser's exception."""
    if isinstance(error, hjson.HjsonDecodeError) and (runaway := _runaway_string(text)):
        line_no, value = runaway
        if line_no <= error.lineno:
            return (
                f":{line_no}: invalid Hjson: the unquoted string {value!r} runs to the end of "
                "the line (its ',', '}' and ']' included): quote it, or give it a line of its "
                f"own (the parser stopped at line {error.lineno}: {error.msg})"
            )
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


_KEY = re.compile(r"""\s*(?:"[^"\n]*"|'[^'\n]*'|[^\s:,{}\[\]"']+)\s*:\s*""")
_QUOTED = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
_LITERAL = re.compile(r"(?:-?\d[\d.eE+-]*|true|false|null)\s*(?=[,}\]]|$)")


def _runaway_string(text: str) -> tuple[int, str] | None:
    """(line, value) of the first unquoted string written inside a ``{ ... }`` or
    ``[ ... ]`` opened on its own line: Hjson reads such a string to the end of the line,
    so the bracket never closes and the parser complains lines later."""
    for line_no, line in enumerate(text.splitlines(), 1):
        value = _runaway_in(line)
        if value is not None:
            return line_no, value
    return None


def _runaway_in(line: str) -> str | None:
    key = _KEY.match(line)
    pos = key.end() if key else len(line) - len(line.lstrip())
    if not line.startswith(("{", "["), pos):
        return None  # a value of its own (a quoteless one ends with the line: fine)
    while pos < len(line):
        if line[pos] in " \t,{}[]":
            pos += 1
            continue
        if line.startswith(("#", "//", "/*"), pos):
            return None
        key = _KEY.match(line, pos)
        pos = key.end() if key else pos
        known = _QUOTED.match(line, pos) or _LITERAL.match(line, pos)
        if known:
            pos = known.end()
        elif pos < len(line) and line[pos] not in "{[":
            rest = line[pos:].strip()
            return rest if any(c in rest for c in ",}]") else None
    return None


def line_map(text: str, fmt: str) -> dict[str, int]:
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

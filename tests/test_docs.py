"""Docs that run: every config example of README.md and docs/*.md loads as ``check``
loads it, and every console example that needs no server runs and exits as the doc says.

What a block is, when it is not a whole config or a command to run, is said in the
markdown itself, by an HTML comment on the line right before its fence (invisible once
rendered); a block without one must load, or run:

* ``<!-- fragment: KIND -->`` (KIND in :data:`WRAPPERS`; ``; on=REGEX`` gives the rule's
  pattern when the fragment uses its variables): part of a config, loaded wrapped into a
  minimal one;
* ``<!-- file: NAME -->``: a whole config, also written as NAME for the console examples
  of the same page;
* ``<!-- not a config: WHY -->``: JSON that is no config (a dead letter, log lines),
  parsed as JSON only;
* ``<!-- console: needs a server -->``: commands that talk to Redis: each is parsed by the
  CLI (its subcommand and options exist, its values have the right types), none is run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from resc_dramatiq.cli import main
from tests.procs import CLI

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: The config formats ``check`` reads (``config/files.py``), by fence language.
CONFIG_LANGUAGES = {"json": ".json", "hjson": ".hjson", "yaml": ".yaml", "toml": ".toml"}
CONSOLE_LANGUAGES = {"sh", "console", "shell", "bash"}

#: What the offline commands are: they never talk to Redis.
OFFLINE = {"check", "explain"}

#: How a fragment of each kind becomes a whole config (JSON, so valid Hjson too): the
#: fragment goes on its own lines in place of FRAGMENT (Hjson strings end with the line).
WRAPPERS = {
    "top level": '{"watchers": [{"input_queue": "docs/in", "rules": []}],\nFRAGMENT\n}',
    "rule": '{"watchers": [{"input_queue": "docs/in", "rules": [\nFRAGMENT\n]}]}',
    "rule member": '{"watchers": [{"input_queue": "docs/in", "rules": [{"on": ON,\nFRAGMENT\n}]}]}',
    "fetch member": (
        '{"watchers": [{"input_queue": "docs/in", "rules": [{"on": ON, "fetch": [{'
        '"url": "https://catalogue.example/x", "returns": "r",\nFRAGMENT\n}], '
        '"make": {"queue": "docs/out"}}]}]}'
    ),
}

MARKER = re.compile(r"^<!--\s*(fragment|file|not a config|console):\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page, with the marker right before it (if any)."""

    page: Path
    line: int  # of the opening fence
    language: str
    text: str
    marker: tuple[str, str] | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((x.strip() for x in reversed(lines[:i]) if x.strip()), "")
        marked = MARKER.match(before)
        marker = (marked[1], marked[2]) if marked else None
        if before.startswith("<!--") and marker is None:
            raise AssertionError(f"{page}:{i}: unknown marker {before}")
        found.append(Block(page, i + 1, fence[1], "\n".join(lines[i + 1 : end]) + "\n", marker))
        i = end + 1
    return found


BLOCKS = [b for page in PAGES for b in blocks_of(page)]
CONFIGS = [b for b in BLOCKS if b.language in CONFIG_LANGUAGES]
CONSOLES = [b for b in BLOCKS if b.language in CONSOLE_LANGUAGES]


def check(text: str, suffix: str, directory: Path) -> tuple[int, str]:
    """``resc-dramatiq check`` of ``text`` written as a file with ``suffix``."""
    path = directory / f"example{suffix}"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check", str(path)])
    return result.exit_code, result.output


def test_the_docs_have_config_and_console_examples() -> None:
    assert len(CONFIGS) >= 10 and len(CONSOLES) >= 15


@pytest.mark.parametrize("block", CONFIGS, ids=lambda b: b.where)
def test_every_config_example_loads(block: Block, tmp_path: Path) -> None:
    kind, value = block.marker or ("whole", "")
    suffix = CONFIG_LANGUAGES[block.language]
    if kind == "not a config":
        assert value, f"{block.where}: say why it is not a config"
        assert block.language == "json", f"{block.where}: only JSON is parsed as data"
        try:
            json.loads(block.text)
        except json.JSONDecodeError:  # one object per line
            [json.loads(line) for line in block.text.splitlines() if line.strip()]
        return
    if kind == "fragment":
        fragment, *options = [part.strip() for part in value.split(";")]
        assert fragment in WRAPPERS, f"{block.where}: no wrapper for a {fragment!r} fragment"
        on = dict(o.split("=", 1) for o in options).get("on", "^(?P<x>.*)$")
        text = WRAPPERS[fragment].replace("ON", json.dumps(on)).replace("FRAGMENT", block.text)
    else:
        assert kind in ("whole", "file"), f"{block.where}: marker {kind!r} on a config"
        text = block.text
    code, output = check(text, suffix, tmp_path)
    assert code == 0, f"{block.where}: {output}"


def commands_of(block: Block) -> list[tuple[list[str], list[str]]]:
    """Each ``resc-dramatiq`` command of a console block (its arguments) with the output
    the doc shows after it (console blocks only)."""
    found: list[tuple[list[str], list[str]]] = []
    output: list[str] | None = None
    for line in block.text.splitlines():
        prompt = block.language == "console"
        if prompt and not line.startswith("$ "):
            if output is not None:
                output.append(line)
            continue
        line = line.removeprefix("$ ")
        line = re.sub(r"^(?:\w+=(?:\$\([^)]*\)|\S+)\s+)+", "", line)  # VAR=value prefixes
        words = shlex.split(line, comments=True)
        output = None
        if words and words[0] == "resc-dramatiq":
            output = []
            found.append((words[1:], output))
    return found


def offline(args: list[str]) -> bool:
    return bool(args) and (args[0] in OFFLINE or "--help" in args or "-h" in args)


def parse(args: list[str]) -> None:
    """Parse ``resc-dramatiq ARGS`` as the CLI would, running nothing."""
    command: click.Command = main
    name, parent = "resc-dramatiq", None
    while True:
        context = command.make_context(name, list(args), parent=parent)
        if not isinstance(command, click.Group):
            return
        rest = [*getattr(context, "_protected_args", []), *context.args]
        found, sub, args = command.resolve_command(context, rest)
        assert sub is not None and found is not None, rest
        name, command, parent = found, sub, context


def files_for(block: Block, directory: Path) -> None:
    """The configs the block's page names (``<!-- file: NAME -->``) and the example
    project, in ``directory``."""
    (directory / "example_project").symlink_to(ROOT / "example_project")
    for b in BLOCKS:
        if b.page == block.page and b.marker and b.marker[0] == "file":
            (directory / b.marker[1]).write_text(b.text)


@pytest.mark.parametrize("block", CONSOLES, ids=lambda b: b.where)
def test_every_console_example_runs_or_is_marked_as_needing_a_server(
    block: Block, tmp_path: Path
) -> None:
    needs_server = block.marker == ("console", "needs a server")
    assert block.marker is None or needs_server, f"{block.where}: marker {block.marker}"
    files_for(block, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESC_")}
    for args, shown in commands_of(block):
        if needs_server:
            parse(args)
            continue
        assert offline(args), f"{block.where}: {args[0]} needs a server: mark the block"
        ran = subprocess.run(
            [CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        out = ran.stdout + ran.stderr
        failing = any(line.startswith("error:") for line in shown)
        assert (ran.returncode != 0) == failing, f"{block.where}: {args}: {out}"
        lines = iter(out.splitlines())
        missing = [line for line in shown if line.strip() and line not in lines]
        assert not missing, f"{block.where}: {args}: not printed: {missing}\n{out}"

"""What several commands share: loading rules and app, Redis URLs, logging, exit codes."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import redis

from ..config.model import Config
from ..errors import ConfigError, RedisURLError
from ..ops.logformat import FORMATS, formatter
from ..rules.ruleset import RuleSet
from ..store.connect import connect as connect_url
from ..store.urls import safe_url as safe_url  # re-exported for the commands
from ..worker.app import App, build_ruleset, load_app
from ..worker.completion import has_completion

EXIT_INVALID = 2
EXIT_FAILED = 1

config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=str))
optional_config_argument = click.argument(
    "config", required=False, type=click.Path(dir_okay=False, path_type=str)
)
app_option = click.option(
    "--app",
    metavar="MODULE[:BROKER]",
    help="Dramatiq app to import as the dramatiq command does: its @on_done rules join "
    "CONFIG (then optional), actor targets are checked against its actors, and commands "
    "that talk to Redis use its broker's server and namespace unless CONFIG names them. "
    "A Django project: django (DJANGO_SETTINGS_MODULE) or django:SETTINGS sets Django up "
    "and imports its installed apps' tasks modules.",
)
redis_url_option = click.option(
    "--redis-url",
    envvar="RESC_REDIS_URL",
    help="Redis URL for every watcher (overrides the config and --app's broker; "
    "env RESC_REDIS_URL).",
)


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@dataclass(frozen=True, slots=True)
class Loaded:
    """What CONFIG and ``--app`` gave a command: the compiled rules, and the app if any."""

    ruleset: RuleSet
    app: App | None = None


def load(config_path: str | None, app: str | None = None) -> Loaded:
    """Load and compile a config and/or an app's code rules; exit 2 with the problems."""
    try:
        config = _read_config(config_path)
        imported = _import_app(app)
        return Loaded(build_ruleset(config, imported), imported)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INVALID)


def config_or_argument(
    config: str | None, app: str | None, arguments: tuple[str, ...]
) -> tuple[str | None, tuple[str, ...]]:
    """(CONFIG, ARGUMENTS) as meant: with ``--app`` (CONFIG then optional), a first
    argument that is no file is the first of the ARGUMENTS (an event, an id)."""
    if app is not None and config is not None and not Path(config).is_file():
        return None, (config, *arguments)
    return config, arguments


def load_rules(config_path: str | None, app: str | None = None) -> RuleSet:
    """The rules alone, for the commands that never talk to Redis (check, explain)."""
    return load(config_path, app).ruleset


def _read_config(path: str | None) -> Config | None:
    if path is None:
        return None
    config = Config.load(path)
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    return config


def _import_app(spec: str | None) -> App | None:
    if spec is None:
        return None
    app = load_app(spec)
    if not has_completion(app.broker):
        click.echo(f"warning: {spec}: no Completion middleware on the broker", err=True)
    return app


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Exit 1 naming the server (password masked) when Redis fails inside the block."""
    try:
        yield
    except redis.RedisError as e:
        fail(f"Redis at {safe_url(url)}: {type(e).__name__}", EXIT_FAILED)


def utc(seconds: float) -> str:
    """A unix time as ``YYYY-MM-DD HH:MM:SS`` in UTC, for listings."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def connect(url: str) -> redis.Redis:
    """A client for ``url`` (any form :func:`resc_dramatiq.connect` reads); a malformed
    URL exits 2 with a message naming it (password masked)."""
    try:
        return connect_url(url)
    except RedisURLError as e:
        fail(str(e))


def setup_logging(
    level: str, log_format: str = "text", fields: Mapping[str, Any] | None = None
) -> None:
    """Configure logging for a long-running command (the library never does).

    ``log_format`` is ``text`` or ``json`` (one object per line, see ``logformat``);
    ``fields`` are added to every JSON line (``instance``...).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, fields=fields))
    logging.basicConfig(level=level.upper(), handlers=[handler])


log_format_option = click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(FORMATS),
    help="text, or json: one JSON object per line (ts, level, logger, message, fields).",
)


F = TypeVar("F", bound=Callable[..., Any])


def stacked(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Several click decorators as one, applied as if written one above the other."""

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


#: CONFIG, --app, --redis-url and --watcher: where the watchers of a command are.
watchers_option = stacked(
    optional_config_argument,
    app_option,
    redis_url_option,
    click.option(
        "--watcher", metavar="INPUT", help="Only the watcher of this input list (default: all)."
    ),
)

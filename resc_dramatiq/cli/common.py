"""What several commands share: loading rules, Redis URLs, logging, exit codes."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click
import redis

from ..config import Config
from ..errors import ConfigError
from ..rules import RuleSet

EXIT_INVALID = 2
EXIT_FAILED = 1

config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=str))
redis_url_option = click.option(
    "--redis-url",
    envvar="RESC_REDIS_URL",
    help="Redis URL for every watcher (overrides the config; env RESC_REDIS_URL).",
)


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_rules(config_path: str) -> RuleSet:
    """Load and compile a config, printing its warnings; exit 2 with the problems."""
    try:
        config = Config.load(config_path)
        for warning in config.warnings:
            click.echo(f"warning: {warning}", err=True)
        return RuleSet.compile(config)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INVALID)


def connect(url: str) -> redis.Redis:
    """A client for ``url``; a malformed URL exits 2 with a clear message."""
    try:
        return redis.Redis.from_url(url, health_check_interval=10, socket_keepalive=True)
    except ValueError as e:
        fail(f"invalid Redis URL: {e}")


def setup_logging(level: str) -> None:
    """Configure logging for a long-running command (the library never does)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

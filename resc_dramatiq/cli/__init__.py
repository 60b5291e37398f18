"""The ``resc-dramatiq`` command line: a thin click layer over the library.

Each module here holds the commands of one area and registers them on :data:`main`.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="resc-dramatiq")
def main() -> None:
    """Rule-based task generation for Dramatiq fleets: when X is done, queue Y, once."""


from . import (  # noqa: E402  (register)
    dashboard_cmds,
    dead_cmds,
    dead_messages_cmds,
    demo_cmds,
    joins_cmds,
    ops_cmds,
    router_cmds,
    rules_cmds,
    status_cmds,
    why_cmds,
)

__all__ = [
    "dashboard_cmds",
    "dead_cmds",
    "dead_messages_cmds",
    "demo_cmds",
    "joins_cmds",
    "main",
    "ops_cmds",
    "router_cmds",
    "rules_cmds",
    "status_cmds",
    "why_cmds",
]

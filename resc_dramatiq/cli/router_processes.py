"""``router --processes N``: the supervisor's side of the command line.

The router command checks its config, then hands over here: N children, each the same
command line with ``--processes 1`` and its own instance name, run under
:class:`~resc_dramatiq.ops.supervisor.Supervisor`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

import click

from ..ops.supervisor import ChildSpec, Supervisor

logger = logging.getLogger(__name__)


def _processes(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """``--processes``: a number from 1 to 256, or ``auto`` (one per core)."""
    text = value.strip().lower()
    if text == "auto":
        return os.cpu_count() or 1
    if text.isdigit() and 1 <= int(text) <= 256:
        return int(text)
    raise click.BadParameter(f"{value!r} is neither a number from 1 to 256 nor 'auto'")


processes_option = click.option(
    "--processes",
    default="1",
    show_default=True,
    metavar="N|auto",
    callback=_processes,
    help="Router processes to run under one supervisor (auto: one per core); "
    "each is a full instance named <instance>-<i>.",
)


def supervise(ctx: click.Context, processes: int, prefix: str, restart_limit: int) -> NoReturn:
    """Run ``processes`` routers of this command line under a :class:`Supervisor`; exit."""
    children = [
        ChildSpec(f"{prefix}-{i}", _child_argv(ctx, instance=f"{prefix}-{i}", index=i))
        for i in range(processes)
    ]
    supervisor = Supervisor(children=children, restart_limit=restart_limit)

    def stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info(
        "router supervisor (pid %d): %d processes, instances %s",
        os.getpid(),
        processes,
        ", ".join(c.name for c in children),
    )
    code = supervisor.run()
    logger.info("router supervisor stopped (exit %d)", code)
    sys.exit(code)


def _child_argv(ctx: click.Context, *, instance: str, index: int) -> list[str]:
    """The command line of child ``index``: this one with ``--processes 1``.

    Every option given to the supervisor is passed on (read from the command's own
    parameters, so a new option cannot be forgotten here); the instance name is
    ``instance``, and a metrics port ``P`` becomes ``P + index`` (0, a free port, stays 0).
    """
    argv = [sys.executable, "-m", "resc_dramatiq", "router"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name in ("processes", "instance") or value is None:
            continue
        if param.name == "metrics_port" and value:
            value = int(value) + index
        if isinstance(param, click.Argument):
            argv.append(str(value))
        elif isinstance(param, click.Option) and param.is_flag:
            argv += [param.opts[0]] if value else []
        else:
            argv += [param.opts[0], str(value)]
    argv += ["--instance", instance]
    return argv

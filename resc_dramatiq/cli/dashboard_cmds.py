"""``dashboard``: the web UI over the pipelines of CONFIG and ``--app``.

Each watcher's Redis and the Dramatiq namespace are found as for every other command
(:mod:`.servers`). The access token and the password come from the environment
(``RESC_DASHBOARD_TOKEN``, ``RESC_DASHBOARD_PASSWORD``), never from the command line,
where other users of the machine could read them.

Any URL :func:`resc_dramatiq.connect` reads works, ``redis+sentinel://`` included: every
page reads Redis afresh, so the dashboard follows a failover by itself (a page answers
503 while no primary can be reached); outages and each new primary are logged once
(:mod:`..dashboard.following`).
"""

from __future__ import annotations

import os

import click

from ..dashboard import Settings, Site, WatcherSite, create_app
from ..dashboard.app_facts import app_facts
from ..dashboard.hosts import WILDCARDS, AllowedHosts, hosts_for
from ..dashboard.server import listen, serve
from ..dashboard.site import PASSWORD_ENV, TOKEN_ENV
from . import main
from .common import (
    EXIT_FAILED,
    Loaded,
    app_option,
    fail,
    load,
    optional_config_argument,
    reaching,
    redis_url_option,
    safe_url,
    setup_logging,
)
from .servers import namespace_for, servers_for


@main.command()
@optional_config_argument
@app_option
@redis_url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8060, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME[:PORT]",
    help="Also answer requests naming this host (repeatable); by default only the "
    "loopback names and the --host address, with the port, are answered.",
)
@click.option("--read-only", is_flag=True, help="Show everything, allow no action at all.")
@click.option(
    "--refresh",
    "refresh_s",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds between the live refreshes of a page.",
)
def dashboard(
    config: str | None,
    app: str | None,
    redis_url: str | None,
    host: str,
    port: int,
    allowed_hosts: tuple[str, ...],
    read_only: bool,
    refresh_s: float,
) -> None:
    """Serve the web dashboard of CONFIG: pipelines, dead letters, queues, sets, processes."""
    hosts = hosts_for(host, port, allowed_hosts)
    try:
        AllowedHosts(hosts)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--allowed-host") from None
    loaded = load(config, app)
    setup_logging("warning")  # outages and changes of primary, one line each
    site = site_of(loaded, redis_url)
    settings = Settings(
        read_only=read_only,
        token=os.environ.get(TOKEN_ENV) or None,
        password=os.environ.get(PASSWORD_ENV) or None,
        refresh_s=refresh_s,
        allowed_hosts=hosts,
    )
    try:
        sock = listen(host, port)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}", EXIT_FAILED)
    guarded = " (access token required)" if settings.token else ""
    guarded += " (password required)" if settings.password else ""
    mode = ", read-only" if read_only else ""
    click.echo(f"dashboard at http://{host}:{port}/{mode}{guarded}", err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not (settings.token or settings.password):
        click.echo(
            f"warning: --host {host}: reachable from other machines without a token or "
            f"password (set {TOKEN_ENV} or {PASSWORD_ENV})",
            err=True,
        )
    if host.lower() in WILDCARDS and not allowed_hosts:
        click.echo(
            f"warning: --host {host}: only the loopback names are answered; give the "
            "names others use to reach it with --allowed-host",
            err=True,
        )
    serve(create_app(site, settings), sock=sock)


def site_of(loaded: Loaded, redis_url: str | None) -> Site:
    """What the dashboard shows: each watcher with a client of its Redis (pinged: exit 1
    naming the server when it does not answer) and its URL as the pages print it,
    secrets masked."""
    servers = servers_for(loaded, redis_url)
    watchers = []
    for rules, server in zip(loaded.ruleset.watchers, servers, strict=True):
        client = server.connect()
        with reaching(server.url):
            client.ping()
        watchers.append(WatcherSite(rules, client, safe_url(server.url)))
    namespace = namespace_for(loaded) or loaded.ruleset.config.spec.namespace
    app = app_facts(loaded.app.broker) if loaded.app is not None else None
    return Site(loaded.ruleset, tuple(watchers), namespace, app)

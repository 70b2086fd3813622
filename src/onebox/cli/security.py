"""Security: the audit, the server's history, and its private CA's certificate."""

from __future__ import annotations

import click

from onebox import api, views
from onebox.cli.base import Context, command, fail_if, host_option, lines_option, main


@main.command()
@host_option
@click.option("--lynis", is_flag=True, help="Also run Lynis on the server (installs it; ~1 min).")
@click.option("--all-ports", is_flag=True, help="Scan all 65,535 TCP ports, not the common ones.")
@command
def audit(ctx: Context, host: str | None, lynis: bool, all_ports: bool) -> None:
    """Check the server's protections as they are now; exit 1 if one fails."""
    result = api.audit(ctx.project(), host, ctx.reporter, lynis=lynis, all_ports=all_ports)
    ctx.done(result, views.audit_text(result))
    fail_if(result["failed"])


@main.command()
@host_option
@lines_option(30, "entries")
@command
def history(ctx: Context, host: str | None, lines: int) -> None:
    """What was done to the server and by whom: setups, deploys, rollbacks, restores…"""
    result = api.history(ctx.project(), host, ctx.reporter, lines=lines)
    ctx.done(result, views.history_table(result))


@main.command()
@host_option
@command
def ca(ctx: Context, host: str | None) -> None:
    """Print the root certificate of the server's private CA (for LAN/IP sites)."""
    pem = api.caddy_root_ca(ctx.project(), host, ctx.reporter)
    ctx.done({"certificate": pem}, pem.rstrip())

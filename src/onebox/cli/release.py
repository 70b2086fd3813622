"""Releases: the kept ones, rollback, cancelling a deploy, the maintenance page."""

from __future__ import annotations

import click

from onebox import api, views
from onebox.cli.base import Context, command, fail_if, host_option, main


@main.command()
@host_option
@command
def releases(ctx: Context, host: str | None) -> None:
    """List the releases kept on the server; the live one is marked."""
    result = api.releases(ctx.project(), host, ctx.reporter)
    ctx.done(result, views.releases_table(result))


@main.command()
@host_option
@click.argument("release", required=False)
@click.option(
    "--force",
    is_flag=True,
    help="Roll back even though the database has migrations the older release lacks.",
)
@click.option(
    "--restore-db",
    is_flag=True,
    help="Put the database (and media) back as the backup taken before those migrations "
    "holds it, behind the maintenance page; data written since is kept in a safety backup.",
)
@command
def rollback(
    ctx: Context, host: str | None, release: str | None, force: bool, restore_db: bool
) -> None:
    """Switch back to the previous release (or RELEASE), with no downtime."""
    if force and restore_db:
        raise click.UsageError("--force and --restore-db exclude each other: choose one")
    result = api.rollback(
        ctx.project(), host, ctx.reporter, release=release, force=force, restore_db=restore_db
    )
    ctx.done(result, views.rollback_text(result))
    fail_if(result.get("problems"))


@main.command()
@host_option
@command
def cancel(ctx: Context, host: str | None) -> None:
    """Stop the deploy in progress (from any machine) before it moves traffic."""
    result = api.cancel(ctx.project(), host, ctx.reporter)
    ctx.done(result, views.cancel_text(result))
    # it went live: `onebox rollback` once it ends
    fail_if(any(outcome.startswith("too late") for outcome in result["runs"].values()))


@main.command()
@host_option
@click.argument("state", type=click.Choice(["on", "off"]))
@command
def maintenance(ctx: Context, host: str | None, state: str) -> None:
    """Serve a 503 maintenance page (.onebox/maintenance.html if the release has one)."""
    result = api.maintenance(ctx.project(), host, ctx.reporter, on=state == "on")
    ctx.done(result, f"maintenance mode {state}")

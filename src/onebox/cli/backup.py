"""Backups: take one, verify one, the key, the list, and restoring one."""

from __future__ import annotations

from pathlib import Path

import click

from onebox import api, views
from onebox.cli.base import Context, command, host_option, main


@main.group(invoke_without_command=True)
@host_option
@click.pass_context
def backup(click_ctx: click.Context, host: str | None) -> None:
    """Back up the database and media now (subcommands: verify, key)."""
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(backup_now, host=host)


@command
def backup_now(ctx: Context, host: str | None) -> None:
    result = api.backup(ctx.project(), host, ctx.reporter)
    ctx.done(result, views.backup_text(result))


@backup.command("verify")
@host_option
@click.argument("backup_id", required=False)
@command
def backup_verify(ctx: Context, host: str | None, backup_id: str | None) -> None:
    """Restore a backup (the latest by default) into a scratch database and compare."""
    result = api.verify(ctx.project(), host, ctx.reporter, backup_id=backup_id)
    ctx.done(result, views.verify_text(result))


@backup.command("key")
@host_option
@command
def backup_key(ctx: Context, host: str | None) -> None:
    """Show the backup encryption key, to keep a copy away from the server."""
    result = api.backup_key(ctx.project(), host, ctx.reporter)
    ctx.done(result, views.backup_key_text(result))


@main.command()
@host_option
@command
def backups(ctx: Context, host: str | None) -> None:
    """List the backups: id, time, size, contents, where they are kept."""
    result = api.backups(ctx.project(), host, ctx.reporter)
    for warning in result["warnings"]:
        ctx.reporter.notice(warning)
    ctx.done(result, views.backups_table(result))


@main.command()
@host_option
@click.argument("backup_id", required=False)
@click.option(
    "--to-local",
    "to_local",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Download the backup's database dump to this file instead (changes nothing).",
)
@command
def restore(ctx: Context, host: str | None, backup_id: str | None, to_local: Path | None) -> None:
    """Restore the database and media from a backup (the latest by default).

    A safety backup is taken first, and the site shows a maintenance page meanwhile."""
    if to_local:
        pulled = api.db_pull(
            ctx.project(), host, ctx.reporter, target=to_local, backup_id=backup_id
        )
        ctx.done(pulled, views.pulled_text(pulled))
        return
    result = api.restore(ctx.project(), host, ctx.reporter, backup_id=backup_id)
    ctx.done(result, views.restore_text(result))

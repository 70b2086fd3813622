"""The database: its own shell on the server, or a dump to download."""

from __future__ import annotations

from pathlib import Path

import click

from onebox import api, views
from onebox.cli.base import Context, command, host_option, main


@main.group()
def db() -> None:
    """The app's database: a shell, or a dump to download."""


@db.command("shell")
@host_option
@command
def db_shell(ctx: Context, host: str | None) -> int:
    """Open the database's own shell on the server (sqlite3, mariadb or psql)."""
    return api.db_shell(ctx.project(), host, ctx.reporter)


@db.command("pull")
@host_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--backup", "backup_id", help="Which backup (default: the latest).")
@command
def db_pull(ctx: Context, host: str | None, file: Path, backup_id: str | None) -> None:
    """Download the latest backup's database dump to FILE, for local debugging."""
    result = api.db_pull(ctx.project(), host, ctx.reporter, target=file, backup_id=backup_id)
    ctx.done(result, views.pulled_text(result))

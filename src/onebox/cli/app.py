"""The app: init, setup, deploy, status, logs, manage, run, and its secrets (env)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from onebox import api, views
from onebox.agent.system import env_entry_problem
from onebox.cli.base import (
    Context,
    command,
    dry_run_option,
    fail_if,
    host_option,
    keeps_host,
    lines_option,
    main,
)
from onebox.errors import ConfigError
from onebox.init import init_project


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--host", default="", help="The server, written into [server] host.")
@click.option("--domain", default="", help="The public domain name, if any.")
@click.option("--settings", default=None, help="The settings module to deploy, if not detected.")
@click.option(
    "--force", is_flag=True, help="Write onebox.toml anew (else an existing one is kept)."
)
@command
@keeps_host
def init(
    ctx: Context, path: Path | None, host: str, domain: str, settings: str | None, force: bool
) -> None:
    """Detect the Django project and write a commented onebox.toml (an existing one is
    kept, with what it lacks filled in)."""
    target, found, filled = init_project(
        path or ctx.project_dir or Path.cwd(),
        host=host,
        domain=domain,
        force=force,
        settings=settings,
    )
    data = {k: v for k, v in vars(found).items() if k not in ("root", "switches")}
    data["switches"] = {name: s.as_dict() for name, s in found.switches.items()}
    result = {"config": str(target), "filled": filled, **data}
    ctx.done(result, views.init_text(str(target), found, filled, host))


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--host", default="", help="The server Apache + mod_wsgi serves the site on.")
@click.option("--settings", default=None, help="The settings module, if not detected.")
@click.option("--force", is_flag=True, help="Replace an existing onebox.toml.")
@click.option(
    "--undo", is_flag=True, help="Put the adopted vhost back: mod_wsgi serves the old code."
)
@click.option(
    "--switch-to",
    type=click.Choice(["caddy", "apache"]),
    help="Move the adopted site off Apache onto onebox's Caddy (no request fails), or back.",
)
@click.option("--confirm", is_flag=True, help="Confirm the move to Caddy: Apache is masked.")
@dry_run_option
@command
@keeps_host
def adopt(
    ctx: Context,
    path: Path | None,
    host: str,
    settings: str | None,
    force: bool,
    undo: bool,
    switch_to: str | None,
    confirm: bool,
    dry_run: bool,
) -> None:
    """Read a site Apache + mod_wsgi serves and write the onebox.toml that takes it over
    (the server is only read: setup and deploy make the changes); --undo goes back."""
    from onebox import adopt as adoption

    if undo:
        result = adoption.undo(ctx.project(), host or None, ctx.reporter)
        ctx.done(result, views.adopt_undo_text(result))
        return
    if switch_to or confirm:
        to = switch_to or "confirm"
        result = adoption.switch(ctx.project(), host or None, ctx.reporter, to)
        ctx.done(result, views.switch_text(result, to))
        return
    if not host:
        raise ConfigError(
            "adopt needs the server Apache serves the site on",
            hint="onebox adopt --host HOST (an address, user@host, or sandbox:NAME)",
        )
    root = path or ctx.project_dir or Path.cwd()
    found = adoption.adopt(
        root, host, ctx.reporter, settings=settings, force=force, write=not dry_run
    )
    ctx.done(found.to_json(), views.adopt_text(found, written=not dry_run))


@main.command()
@host_option
@click.option(
    "--role",
    type=click.Choice(["web", "worker", "db", "lb"]),
    help="Only the hosts of this role in [servers] (web, worker, database, balancer).",
)
@dry_run_option
@command
def setup(ctx: Context, host: str | None, role: str | None, dry_run: bool) -> None:
    """Provision the server: packages, app user, directories, systemd units, Caddy."""
    if host and role:
        raise ConfigError("--host and --role both pick hosts", hint="give one of them")
    result = api.setup(ctx.project(), host, ctx.reporter, dry_run=dry_run, role=role)
    if dry_run:
        ctx.done(result, views.plan_text(result, "setup"))
        return
    for note in result.get("notes", []):
        ctx.reporter.notice(note)
    ctx.done(result, views.setup_text(result))


@main.command()
@host_option
@dry_run_option
@click.option(
    "--allow-breaking",
    is_flag=True,
    help="Run migrations that would break the serving release, behind the maintenance page.",
)
@click.option(
    "--skip-host",
    "skip_hosts",
    multiple=True,
    metavar="NAME",
    help="A web host ([servers] web) left out of this deploy: one that is down.",
)
@command
def deploy(
    ctx: Context,
    host: str | None,
    dry_run: bool,
    allow_breaking: bool,
    skip_hosts: tuple[str, ...],
) -> None:
    """Build a release from this project, ship it, migrate, and switch to it (with
    several web hosts: on each, then switched one host at a time)."""
    result = api.deploy(
        ctx.project(),
        host,
        ctx.reporter,
        dry_run=dry_run,
        allow_breaking=allow_breaking,
        skip_hosts=skip_hosts,
    )
    if dry_run:
        ctx.done(result, views.plan_text(result, f"a deploy of release {result['release']}"))
        return
    ctx.done(result, views.deploy_text(result))
    fail_if(result.get("problems"))  # the release serves, a visitor does not get it


@main.command()
@host_option
@command
def status(ctx: Context, host: str | None) -> None:
    """Show what the server runs: release, slots, health."""
    result = api.status(ctx.project(), host, ctx.reporter)
    ctx.done(result, views.status_text(result))
    fail_if(result.get("problems"))  # the site is down (or about to change): scripts see it


@main.command()
@host_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@lines_option(100, "lines")
@click.option("--process", metavar="NAME", help="Only this process or schedule's log.")
@click.option(
    "--access",
    is_flag=True,
    help="The access log instead: one line per request (with --json, Caddy's JSON lines).",
)
@command
def logs(
    ctx: Context, host: str | None, follow: bool, lines: int, process: str | None, access: bool
) -> int:
    """Show the app's log (gunicorn, Django, processes, schedules) from the journal."""
    if access and process:
        raise ConfigError("--access and --process show different logs", hint="give one of them")
    return api.logs(
        ctx.project(),
        host,
        ctx.reporter,
        follow=follow,
        lines=lines,
        process=process,
        access="json" if access and ctx.json else "text" if access else None,
    )


@main.command(context_settings={"ignore_unknown_options": True})
@host_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@command
def manage(ctx: Context, host: str | None, args: tuple[str, ...]) -> int:
    """Run manage.py on the server: onebox manage -- createsuperuser"""
    if not args:
        raise ConfigError(
            "no manage.py command given", hint="e.g. onebox manage -- createsuperuser"
        )
    return api.manage(ctx.project(), host, ctx.reporter, args=list(args))


@main.command(context_settings={"ignore_unknown_options": True})
@host_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@command
def run(ctx: Context, host: str | None, args: tuple[str, ...]) -> int:
    """Run a command in the live release: onebox run -- python manage.py check"""
    if not args:
        raise ConfigError("no command given", hint="e.g. onebox run -- python manage.py check")
    return api.run(ctx.project(), host, ctx.reporter, args=list(args))


@main.group()
def env() -> None:
    """The app's secrets on the server (a 0600 file, read by systemd)."""


backup_env_option = click.option(
    "--backup",
    is_flag=True,
    help="The off-site backup credentials (e.g. AWS_ACCESS_KEY_ID), not the app's secrets.",
)


@env.command("set")
@host_option
@backup_env_option
@click.argument("pairs", nargs=-1, required=True)
@command
def env_set(ctx: Context, host: str | None, backup: bool, pairs: tuple[str, ...]) -> None:
    """Set KEY=VALUE pairs (use KEY=- to read the value from standard input)."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"{pair!r} is not KEY=VALUE", hint="e.g. onebox env set API_KEY=abc")
        if value == "-":  # one line; its line ending (\n or \r\n) is not part of it
            value = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        problem = env_entry_problem(key, value)
        if problem:
            raise ConfigError(problem, hint="nothing was changed; e.g. onebox env set API_KEY=abc")
        values[key] = value
    result = api.env_set(ctx.project(), host, ctx.reporter, values=values, backup=backup)
    ctx.done(result, views.env_set_text(result, backup))


@env.command("unset")
@host_option
@backup_env_option
@click.argument("keys", nargs=-1, required=True)
@command
def env_unset(ctx: Context, host: str | None, backup: bool, keys: tuple[str, ...]) -> None:
    """Remove variables."""
    result = api.env_unset(ctx.project(), host, ctx.reporter, keys=list(keys), backup=backup)
    ctx.done(result, f"removed {', '.join(result['removed'])}")


@env.command("list")
@host_option
@click.option("--reveal", is_flag=True, help="Show the values (they are masked by default).")
@backup_env_option
@command
def env_list(ctx: Context, host: str | None, reveal: bool, backup: bool) -> None:
    """List the variables set on the server."""
    result = api.env_list(ctx.project(), host, ctx.reporter, reveal=reveal, backup=backup)
    ctx.done(result, views.env_list_text(result))

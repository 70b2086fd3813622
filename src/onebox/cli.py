"""The `onebox` command line: parse, call the library API, print. Nothing else lives here."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from onebox import __version__, api, sandbox, views
from onebox.agent.backup import human
from onebox.agent.site_check import MAINTENANCE
from onebox.agent.system import env_entry_problem
from onebox.config import load_project
from onebox.errors import ConfigError, ExitCode, OneboxError
from onebox.init import init_project
from onebox.output import HumanReporter, JsonReporter


class Context:
    def __init__(
        self, as_json: bool, verbose: bool, project_dir: Path | None, host: str | None = None
    ) -> None:
        self.host = host
        self.json = as_json
        self.verbose = verbose
        self.project_dir = project_dir
        self.reporter: HumanReporter | JsonReporter = (
            JsonReporter() if as_json else HumanReporter(verbose)
        )

    def project(self):
        return load_project(self.project_dir)

    def done(self, data: Any, text: str | None) -> None:
        if isinstance(self.reporter, JsonReporter):
            self.reporter.emit(data)
        elif text:
            self.reporter.result(text)


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body with onebox's one error handler: a message and an exit code."""

    @functools.wraps(func)
    @click.pass_obj
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> None:
        if "host" in kwargs and not kwargs["host"] and func.__name__ != "init":
            kwargs["host"] = ctx.host  # `onebox --host X status` works as well
        try:
            code = func(ctx, *args, **kwargs)
        except OneboxError as error:
            ctx.reporter.error(error)
            sys.exit(int(error.exit_code))
        except KeyboardInterrupt:
            ctx.reporter.error(
                OneboxError(
                    "interrupted: this client stopped following",
                    hint="a setup, deploy, rollback, restore or backup already under way goes "
                    "on to its end on the server (or undoes itself if a step fails); "
                    "`onebox status` and `onebox history` show the outcome. To stop a "
                    "deploy before it moves traffic: `onebox cancel`; after: `onebox rollback`",
                )
            )
            sys.exit(130)
        except Exception as error:  # a bug: one line, and the traceback only when asked
            if ctx.verbose or os.environ.get("ONEBOX_DEBUG"):
                raise
            ctx.reporter.error(
                OneboxError(f"internal error: {error!r}", hint="rerun with --verbose and report it")
            )
            sys.exit(int(ExitCode.FAILED))
        sys.exit(code or 0)

    return wrapper


host_option = click.option(
    "--host",
    help="Server to use instead of [server] host "
    "(an address, user@host, an ssh alias, or sandbox:NAME).",
)
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Show what would be done; do nothing."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onebox")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (for scripts and CI)."
)
@click.option("-v", "--verbose", is_flag=True, help="More detail, and tracebacks of onebox bugs.")
@click.option(
    "-C",
    "--project",
    "project_dir",
    type=click.Path(path_type=Path),
    help="The Django project's folder (default: the current one).",
)
@host_option
@click.pass_context
def main(
    click_ctx: click.Context,
    as_json: bool,
    verbose: bool,
    project_dir: Path | None,
    host: str | None,
) -> None:
    """Run a Django project in production on one Debian server you own."""
    click_ctx.obj = Context(as_json, verbose, project_dir, host)


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--host", default="", help="The server, written into [server] host.")
@click.option("--domain", default="", help="The public domain name, if any.")
@click.option("--settings", default=None, help="The settings module to deploy, if not detected.")
@click.option(
    "--force", is_flag=True, help="Write onebox.toml anew (else an existing one is kept)."
)
@command
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
    if filled is None:
        headline = f"wrote {target}"
    elif filled:
        headline = f"kept {target}, filled in {', '.join(filled)}"
    else:
        headline = f"kept {target} (it has everything init detects; --force writes it anew)"
    lines = [
        headline,
        f"  settings      {found.settings}",
        f"  wsgi          {found.wsgi}",
        f"  dependencies  {found.requirements or '(none found)'}",
        f"  static root   {found.static_root or '(not set: collectstatic needs STATIC_ROOT)'}",
        f"  media root    {found.media_root or '(not set)'}",
    ]
    if found.required_env:
        lines.append(
            f"  secrets       {', '.join(found.required_env)} (set them with "
            "`onebox env set KEY=VALUE`)"
        )
    if found.optional_env:
        lines.append(
            f"  optional      {', '.join(found.optional_env)} (read with a default: set "
            "only those you want)"
        )
    lines += [f"  proposed      {reason}" for reason in found.background_reasons]
    lines += [f"  note: {note}" for note in found.notes]
    lines.append(
        "next: `onebox setup` and `onebox deploy`"
        if host
        else "next: set [server] host, then `onebox setup` and `onebox deploy`"
    )
    data = {k: v for k, v in vars(found).items() if k not in ("root", "switches")}
    data["switches"] = {name: s.as_dict() for name, s in found.switches.items()}
    ctx.done({"config": str(target), "filled": filled, **data}, "\n".join(lines))


@main.command()
@host_option
@dry_run_option
@command
def setup(ctx: Context, host: str | None, dry_run: bool) -> None:
    """Provision the server: packages, app user, directories, systemd units, Caddy."""
    result = api.setup(ctx.project(), host, ctx.reporter, dry_run=dry_run)
    if dry_run:
        text = views.plan_text(result, "setup")
    elif result["changed"]:
        text = f"{result['host']}: set up ({', '.join(result['changed'])} changed)"
    else:
        text = f"{result['host']}: already set up, nothing changed"
    for note in result.get("notes", []) if not dry_run else []:
        ctx.reporter.notice(note)
    ctx.done(result, text)


@main.command()
@host_option
@dry_run_option
@click.option(
    "--allow-breaking",
    is_flag=True,
    help="Run migrations that would break the serving release, behind the maintenance page.",
)
@command
def deploy(ctx: Context, host: str | None, dry_run: bool, allow_breaking: bool) -> None:
    """Build a release from this project, ship it, migrate, and switch to it."""
    result = api.deploy(
        ctx.project(), host, ctx.reporter, dry_run=dry_run, allow_breaking=allow_breaking
    )
    if dry_run:
        ctx.done(result, views.plan_text(result, f"a deploy of release {result['release']}"))
        return
    lines = [f"deployed release {result['release']} in {result['seconds']}s"]
    migrated = result.get("migrations") or {}
    if migrated.get("applied"):
        backup = migrated.get("backup")
        lines.append(
            f"applied {len(migrated['applied'])} migration(s)"
            + (f"; backup {backup} holds the database as it was before" if backup else "")
        )
    _site_lines(ctx, result, lines)


@main.command()
@host_option
@command
def releases(ctx: Context, host: str | None) -> None:
    """List the releases kept on the server; the live one is marked."""
    result = api.releases(ctx.project(), host, ctx.reporter)
    rows = [f"  {'RELEASE':<22} {'CREATED':<21} {'COMMIT':<14} DEPLOYED BY"]
    for entry in reversed(result["releases"]):
        mark = "*" if entry["live"] else " "
        rows.append(
            f"{mark} {entry['release_id']:<22} {entry.get('created', ''):<21} "
            f"{(entry.get('commit') or '-')[:12]:<14} {entry.get('deployer', '')}"
        )
    if not result["releases"]:
        rows = ["no releases yet: `onebox deploy` makes one"]
    ctx.done(result, "\n".join(rows))


@main.command()
@host_option
@click.option("--lynis", is_flag=True, help="Also run Lynis on the server (installs it; ~1 min).")
@click.option("--all-ports", is_flag=True, help="Scan all 65,535 TCP ports, not the common ones.")
@command
def audit(ctx: Context, host: str | None, lynis: bool, all_ports: bool) -> int:
    """Check the server's protections as they are now; exit 1 if one fails."""
    result = api.audit(ctx.project(), host, ctx.reporter, lynis=lynis, all_ports=all_ports)
    marks = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skipped": "skip"}
    rows = []
    for check in result["checks"]:
        rows.append(f"{marks[check['status']]}  {check['name']}: {check['detail']}")
        if check["fix"] and check["status"] in ("fail", "warn"):
            rows.append(f"      fix: {check['fix']}")
    failed = result["failed"]
    rows.append(
        f"score {result['score']}/100 on {result['host']}: "
        + (f"{len(failed)} failed ({', '.join(failed)})" if failed else "every check passed")
    )
    ctx.done(result, "\n".join(rows))
    return int(ExitCode.FAILED) if failed else 0


def lines_option(default: int, what: str) -> Callable[..., Any]:
    """-n/--lines: how many to show (1 or more: a negative count reached the server)."""
    return click.option(
        "-n",
        "--lines",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=f"How many {what} to show.",
    )


@main.command()
@host_option
@lines_option(30, "entries")
@command
def history(ctx: Context, host: str | None, lines: int) -> None:
    """What was done to the server and by whom: setups, deploys, rollbacks, restores…"""
    result = api.history(ctx.project(), host, ctx.reporter, lines)
    rows = [f"{'TIME':<21} {'ACTION':<12} {'RESULT':<7} {'BY':<28} DETAIL"]
    for entry in result["entries"]:
        by = entry.get("by", "?")
        if entry.get("login") not in (None, "root"):
            by += f" ({entry['login']})"
        rows.append(
            f"{entry['time']:<21} {entry['action']:<12} {entry['result']:<7} {by:<28} "
            f"{entry.get('detail', '')}"
        )
    if not result["entries"]:
        rows = ["nothing recorded yet: setup, deploy, rollback, restore… are"]
    ctx.done(result, "\n".join(rows))


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
    result = api.rollback(ctx.project(), host, release, force, ctx.reporter, restore_db)
    lines = [f"rolled back to release {result['release']} (was {result['previous']})"]
    restored = result.get("restored")
    if restored:
        lines.append(
            f"database and media restored from backup {restored['restored']}; what was "
            f"written since is in safety backup {restored['safety_backup']}"
        )
    _site_lines(ctx, result, lines)


def _site_lines(ctx: Context, result: dict, lines: list[str]) -> None:
    """Says "live at" only when a visitor gets the release; else what stands in the way, and a
    non-zero exit (the release itself serves: `onebox status` checks again). The
    maintenance page is the user's own choice: said, but no failure."""
    problems = result.get("problems") or []
    if not problems and not result.get("maintenance"):
        lines.append(f"live at {result['url']}")
    if result.get("maintenance"):
        lines.append(f"but: {MAINTENANCE}")
    lines += [f"but: {problem}" for problem in problems]
    ctx.done(result, "\n".join(lines))
    if problems:
        sys.exit(int(ExitCode.FAILED))


@main.command()
@host_option
@command
def status(ctx: Context, host: str | None) -> None:
    """Show what the server runs: release, slots, health."""
    result = api.status(ctx.project(), host, ctx.reporter)
    release = result.get("release") or {}
    missing = "(its files are missing)" if result.get("live_slot") else "(none deployed)"
    server = result["server"]
    lines = [
        f"server   {result['host']} ({server['os_name']}, Python {server['python']})",
        f"url      {result['url']}",
        f"release  {release.get('release_id', missing)} {release.get('commit', '')}",
        f"slot     {result.get('live_slot') or '-'}  units: "
        + ", ".join(f"{k}={v}" for k, v in result["units"].items()),
        f"caddy    {result['caddy']}",
        f"health   {result.get('health', '-')}",
        *_background_lines(result.get("background") or {}),
        *_backup_lines(result.get("backups") or {}),
        *_update_lines(result.get("updates") or {}),
        *[f"PROBLEM  {problem}" for problem in result.get("problems", [])],
    ]
    ctx.done(result, "\n".join(lines))
    if result.get("problems"):  # the site is down (or about to change): scripts must see it
        sys.exit(int(ExitCode.FAILED))


def _background_lines(state: dict) -> list[str]:
    lines = []
    for process in state.get("processes", []):
        restarts = f", {process['restarts']} restart(s)" if process["restarts"] else ""
        lines.append(
            f"process  {process['name']}: {process['state']} since {process['since'] or '-'}"
            f" (release {process['release']}{restarts})"
        )
    for schedule in state.get("schedules", []):
        outcome = schedule["result"]
        outcome = (
            "FAILED" + outcome.removeprefix("failed") if outcome.startswith("failed") else outcome
        )
        last = f"{schedule['last_run']} {outcome}" if schedule["last_run"] else "never"
        lines.append(
            f"schedule {schedule['name']} ({schedule['calendar']}): last run {last}, "
            f"next {schedule['next'] or '-'}"
        )
    return lines


def _update_lines(state: dict) -> list[str]:
    if not state:
        return []
    parts = ["security updates on" if state.get("unattended_upgrades") else "security updates OFF"]
    if state.get("reboot_required"):
        parts.append("a REBOOT is pending (a new kernel)")
    if state.get("outdated_services"):
        parts.append("restart needed: " + ", ".join(state["outdated_services"]))
    return [f"updates  {'; '.join(parts)}"]


def _backup_lines(state: dict) -> list[str]:
    lines = []
    for job, label in (("backup", "backup"), ("verify", "verified")):
        last = state.get(job)
        if not last:
            text = "never"
        elif last.get("ok"):
            text = f"{last.get('id', '')} at {last['time']}, ok"
        else:
            good = state.get(f"last_good_{job}", {}).get("time", "never")
            text = f"FAILED at {last['time']}: {last.get('error')} (last good: {good})"
        if state.get(f"{job}_unit_failed"):
            text += f"  [the scheduled {job} failed: `onebox logs` shows why]"
        timer = state.get(f"{job}_timer") or {}
        if timer.get("next"):
            text += f"  next: {timer['next']}"
        lines.append(f"{label:<8} {text}")
    return lines


@main.command()
@host_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@lines_option(100, "lines")
@click.option("--process", metavar="NAME", help="Only this process or schedule's log.")
@command
def logs(ctx: Context, host: str | None, follow: bool, lines: int, process: str | None) -> int:
    """Show the app's log (gunicorn, Django, processes, schedules) from the journal."""
    return api.logs(ctx.project(), host, ctx.reporter, follow, lines, process)


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
    return api.manage(ctx.project(), host, ctx.reporter, list(args))


@main.command(context_settings={"ignore_unknown_options": True})
@host_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@command
def run(ctx: Context, host: str | None, args: tuple[str, ...]) -> int:
    """Run a command in the live release: onebox run -- python manage.py check"""
    if not args:
        raise ConfigError("no command given", hint="e.g. onebox run -- python manage.py check")
    return api.run(ctx.project(), host, ctx.reporter, list(args))


@main.command()
@host_option
@command
def ca(ctx: Context, host: str | None) -> None:
    """Print the root certificate of the server's private CA (for LAN/IP sites)."""
    pem = api.caddy_root_ca(ctx.project(), host, ctx.reporter)
    ctx.done({"certificate": pem}, pem.rstrip())


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
    result = api.env_set(ctx.project(), host, values, ctx.reporter, backup=backup)
    changed = ", ".join(result["changed"]) or "nothing"
    if backup:
        ctx.done(result, f"set {changed} for the backups")
    else:
        ctx.done(result, f"set {changed}; deploy (or restart) for the app to see it")


@env.command("unset")
@host_option
@backup_env_option
@click.argument("keys", nargs=-1, required=True)
@command
def env_unset(ctx: Context, host: str | None, backup: bool, keys: tuple[str, ...]) -> None:
    """Remove variables."""
    result = api.env_unset(ctx.project(), host, list(keys), ctx.reporter, backup=backup)
    ctx.done(result, f"removed {', '.join(result['removed'])}")


@env.command("list")
@host_option
@click.option("--reveal", is_flag=True, help="Show the values (they are masked by default).")
@backup_env_option
@command
def env_list(ctx: Context, host: str | None, reveal: bool, backup: bool) -> None:
    """List the variables set on the server."""
    result = api.env_list(ctx.project(), host, ctx.reporter, reveal=reveal, backup=backup)
    ctx.done(result, "\n".join(f"{k}={v}" for k, v in sorted(result["values"].items())))


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
    db = result["manifest"]["db"]
    text = (
        f"backup {result['id']} done in {result['seconds']}s: "
        f"{len(db['tables'])} tables ({human(db['bytes'])} dump), "
        f"{result['manifest']['media']['files']} media files"
    )
    if result.get("offsite"):
        text += f"\ncopied off-site to {result['offsite']}"
    ctx.done(result, text)


@backup.command("verify")
@host_option
@click.argument("backup_id", required=False)
@command
def backup_verify(ctx: Context, host: str | None, backup_id: str | None) -> None:
    """Restore a backup (the latest by default) into a scratch database and compare."""
    result = api.verify(ctx.project(), host, backup_id, ctx.reporter)
    ctx.done(
        result,
        f"backup {result['id']} verified: {result['tables']} tables restored identical; "
        f"repositories checked: {', '.join(result['checked'])}",
    )


@backup.command("key")
@host_option
@command
def backup_key(ctx: Context, host: str | None) -> None:
    """Show the backup encryption key, to keep a copy away from the server."""
    result = api.backup_key(ctx.project(), host, ctx.reporter)
    lines = [
        f"backup key: {result['key']}",
        "",
        "Keep a copy in your password manager, away from this server: backups cannot be",
        "read without it, and a lost server takes its copy with it. To read a repository",
        "by hand: RESTIC_REPOSITORY=<repo> restic snapshots (restic asks for this key).",
        f"repositories: {', '.join(result['repositories'])}",
    ]
    if result["ssh_public_key"]:
        lines += [
            "",
            "The off-site SFTP host must accept this key (add it to authorized_keys):",
            result["ssh_public_key"],
        ]
    ctx.done(result, "\n".join(lines))


@main.command()
@host_option
@command
def backups(ctx: Context, host: str | None) -> None:
    """List the backups: id, time, size, contents, where they are kept."""
    result = api.backups(ctx.project(), host, ctx.reporter)
    for warning in result["warnings"]:
        ctx.reporter.notice(warning)
    rows = [f"{'ID':<16} {'TIME':<21} {'REASON':<9} {'DATABASE':>10} {'MEDIA':>16}  WHERE"]
    for entry in result["backups"]:
        media = f"{entry.get('media_files', 0)} files {human(entry.get('media_bytes', 0))}"
        rows.append(
            f"{entry['id']:<16} {entry['time'][:19]:<21} {entry.get('reason', ''):<9} "
            f"{human(entry.get('db_bytes', 0)):>10} {media:>16}  "
            f"{', '.join(entry['where']) or 'incomplete'}"
        )
    if not result["backups"]:
        rows = ["no backups yet: `onebox backup` makes one"]
    ctx.done(result, "\n".join(rows))


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
        result = api.db_pull(ctx.project(), host, backup_id, to_local, ctx.reporter)
        ctx.done(
            result, f"backup {result['id']}: {result['engine']} dump saved to {result['file']}"
        )
        return
    result = api.restore(ctx.project(), host, backup_id, ctx.reporter)
    ctx.done(
        result,
        f"restored backup {result['restored']} (from the {result['from']} repository)\n"
        f"the data as it was before is in backup {result['safety_backup']}",
    )


@main.command()
@host_option
@click.argument("state", type=click.Choice(["on", "off"]))
@command
def maintenance(ctx: Context, host: str | None, state: str) -> None:
    """Serve a 503 maintenance page (.onebox/maintenance.html if the release has one)."""
    result = api.maintenance(ctx.project(), host, state == "on", ctx.reporter)
    ctx.done(result, f"maintenance mode {state}")


@main.command()
@host_option
@command
def cancel(ctx: Context, host: str | None) -> None:
    """Stop the deploy in progress (from any machine) before it moves traffic."""
    result = api.cancel(ctx.project(), host, ctx.reporter)
    lines = [f"{run}: {outcome}" for run, outcome in result["runs"].items()]
    if "cancelled" in result["runs"].values():
        lines.append("the release it was building is removed; the live release keeps serving")
    ctx.done(result, "\n".join(lines))
    if any(outcome.startswith("too late") for outcome in result["runs"].values()):
        sys.exit(int(ExitCode.FAILED))  # it went live: `onebox rollback` once it ends


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
    result = api.db_pull(ctx.project(), host, backup_id, file, ctx.reporter)
    ctx.done(result, f"backup {result['id']}: {result['engine']} dump saved to {result['file']}")


@main.group("sandbox")
def sandbox_group() -> None:
    """Local practice servers: real Debian with systemd, in a container (root, Linux)."""


@sandbox_group.command("create")
@click.argument("name")
@click.option(
    "--debian", type=click.Choice(sorted(sandbox.SUITES)), default="12", show_default=True
)
@command
def sandbox_create(ctx: Context, name: str, debian: str) -> None:
    """Boot a practice server; target it with --host sandbox:NAME."""
    box = sandbox.create(name, debian, log=ctx.reporter.log)
    ctx.done(
        {"name": box.name, "address": box.address, "debian": box.debian, "host": f"sandbox:{name}"},
        f"practice server {name} is up at {box.address} (Debian {debian})\n"
        f"use it with --host sandbox:{name}",
    )


@sandbox_group.command("list")
@command
def sandbox_list(ctx: Context) -> None:
    """List practice servers."""
    boxes = sandbox.list_all()
    data = [
        {"name": b.name, "address": b.address, "debian": b.debian, "running": b.running}
        for b in boxes
    ]
    text = "\n".join(
        f"{b['name']:<20} {b['address']:<15} debian {b['debian']}  "
        f"{'running' if b['running'] else 'stopped'}"
        for b in data
    )
    ctx.done(data, text or "no practice servers")


@sandbox_group.command("start")
@click.argument("name")
@command
def sandbox_start(ctx: Context, name: str) -> None:
    """Boot a stopped practice server again (its disk is kept)."""
    box = sandbox.start(name, log=ctx.reporter.log)
    ctx.done(
        {"name": box.name, "address": box.address, "running": True},
        f"practice server {name} is up at {box.address}",
    )


@sandbox_group.command("stop")
@click.argument("name")
@command
def sandbox_stop(ctx: Context, name: str) -> None:
    """Power a practice server off, keeping its disk (`sandbox start` boots it)."""
    sandbox.stop(name, log=ctx.reporter.log)
    ctx.done({"name": name, "running": False}, None)


@sandbox_group.command("destroy")
@click.argument("name")
@command
def sandbox_destroy(ctx: Context, name: str) -> None:
    """Stop a practice server and delete it."""
    sandbox.destroy(name, log=ctx.reporter.log)
    ctx.done({"destroyed": name}, None)

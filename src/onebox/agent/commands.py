"""The interactive commands of `onebox-agent` (logs, manage, dbshell, ca, dump, export).

Each builds its command line here, on the server, from arguments it checks, then replaces
itself with it (exec): the user's terminal talks to journalctl, manage.py, the database
client directly. The deploy user's sudo allows only onebox-agent, so these are all the
ways it has to run something as root besides the agent itself.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path, PurePosixPath

from . import background, history, manage_args
from .env_refs import REFS_FILE
from .paths import AGENT_HOME, IMAGE_EXPORTS, AppPaths
from .system import BASE_ENV

APP = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SNAPSHOT = re.compile(r"^[0-9a-f]{8,64}$")
DUMP_NAME = re.compile(r"^/?[A-Za-z0-9._-]{1,100}$")  # as restic names a --stdin file
CA_ROOT = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt"


class Refused(Exception):
    pass


def run(argv: list[str]) -> int:
    builders = {
        "logs": logs,
        "manage": manage,
        "run": run_command,
        "dbshell": dbshell,
        "ca": ca,
        "dump": dump,
        "export": export,
        "db-access": db_access,
        "roll-lock": roll_lock,
    }
    if not argv or argv[0] not in builders:
        print(f"onebox-agent: unknown command; one of {', '.join(builders)}", file=sys.stderr)
        return 2
    try:
        command, env = builders[argv[0]](argv[1:])
    except Refused as exc:
        print(f"onebox-agent: {exc}", file=sys.stderr)
        return 2
    if argv[0] in RECORDED:  # before it runs: the way data leaves the server
        history.ran(argv[1], argv[0], RECORDED[argv[0]](argv[1:]))
    os.execvpe(command[0], command, env)


def _first_argument(args: list[str]) -> str:
    """The command a manage or run call ran (`createsuperuser`), never its options: the
    arguments may hold a password. (args: APP MANAGE_PY --args-from TOKEN, checked.)"""
    try:
        stashed = json.loads(manage_args.path_for(AppPaths(args[0]), args[3]).read_text())
    except (OSError, ValueError, IndexError):
        return ""
    return str(stashed[0]) if isinstance(stashed, list) and stashed else ""


# The commands the history records, and what of their arguments it says.
RECORDED = {
    "manage": _first_argument,
    "run": _first_argument,
    "dbshell": lambda args: "",
    "dump": lambda args: f"backup part {args[1]}" if len(args) > 1 else "",
    "logs": lambda args: "",
    "export": lambda args: f"the {args[1]}" if len(args) > 1 else "",
    "db-access": lambda args: "the database's password, for its app hosts' setup",
}


def app_paths(name: str) -> AppPaths:
    if not APP.match(name) or not AppPaths(name).root.is_dir():
        raise Refused(f"no app {name!r} on this server")
    return AppPaths(name)


def logs(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """logs APP LINES [follow] [process NAME | access [json]]: the web slots, processes,
    schedules and backup timers, or only the process (or schedule) NAME, or the access
    log Caddy writes (see access_log.py)."""
    usage = "usage: logs APP LINES [follow] [process NAME | access [json]]"
    if len(args) < 2 or not args[1].isdigit():
        raise Refused(usage)
    paths, lines, rest = app_paths(args[0]), args[1], args[2:]
    follow = rest[:1] == ["follow"]
    rest = rest[1:] if follow else rest
    if rest[:1] == ["access"]:
        if rest[1:] not in ([], ["json"]):
            raise Refused(usage)
        argv = ["/usr/bin/python3", "-P", "-m", "onebox_agent.access_log"]
        argv += [str(paths.access_log), lines, *(["follow"] if follow else []), *rest[1:]]
        return argv, {**BASE_ENV, "PYTHONPATH": str(AGENT_HOME)}
    if rest and (len(rest) != 2 or rest[0] != "process" or not APP.match(rest[1])):
        raise Refused(usage)
    app = paths.app
    if rest:
        units = background.log_units(paths, rest[1])
        if not units:
            known = ", ".join(background.log_units(paths)) or "none"
            raise Refused(f"no process or schedule {rest[1]!r} runs on this server ({known})")
    else:
        units = [f"onebox-{app}@*", *background.log_units(paths)]
        units += [f"onebox-{app}-backup", f"onebox-{app}-verify"]  # the timers' runs
    argv = ["journalctl", "--no-pager", "-n", lines]
    for unit in units:
        argv += ["-u", unit]
    return argv + (["-f"] if follow else []), dict(BASE_ENV)


def manage(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """manage APP MANAGE_PY --args-from TOKEN: manage.py in the live release, as the app
    user, with its environment loaded by systemd (secrets never on a command line).

    Its arguments (`createsuperuser --password ...`) were left on the server beforehand
    by the agent's `manage-args` action (see manage_args.py), so that they appear in no
    argv: not ssh's, not sudo's log of this command, not systemd-run's, not python's."""
    paths, manage_py, stashed = _stashed(args, "manage")
    current = paths.current
    return _in_release(paths, manage_py, stashed, manage_args.LAUNCHER, current / manage_py)


def run_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """run APP MANAGE_PY --args-from TOKEN: any command in the live release (its
    virtualenv first on PATH), as `manage` runs manage.py; its exit status is this one's."""
    paths, manage_py, stashed = _stashed(args, "run")
    return _in_release(paths, manage_py, stashed, manage_args.RUN_LAUNCHER, None)


def _stashed(args: list[str], what: str) -> tuple[AppPaths, PurePosixPath, Path]:
    if len(args) != 4 or args[2] != "--args-from" or not manage_args.TOKEN.match(args[3]):
        raise Refused(f"usage: {what} APP MANAGE_PY --args-from TOKEN")
    paths = app_paths(args[0])
    manage_py = PurePosixPath(args[1])
    if manage_py.is_absolute() or ".." in manage_py.parts or manage_py.suffix != ".py":
        raise Refused(f"{args[1]!r} is not a manage.py path inside the project")
    stashed = manage_args.path_for(paths, args[3])
    if not stashed.is_file():
        raise Refused(f"those {what} arguments are gone (used once, or over 10 minutes old)")
    return paths, manage_py, stashed


# The app's limits, as far as an interactive command allows (a terminal, a debugger).
INTERACTIVE_SANDBOX = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictSUIDSGID=yes",
)


def _in_release(
    paths: AppPaths, manage_py: PurePosixPath, stashed: Path, launcher: str, script: Path | None
) -> tuple[list[str], dict[str, str]]:
    current, app = paths.current, paths.app
    argv = [
        "systemd-run",
        "--quiet",
        "--pty" if sys.stdin.isatty() else "--pipe",
        "--wait",
        "--collect",
        f"--description=onebox {'manage' if script else 'run'} ({app})",
        f"--uid={app}",
        f"--gid={app}",
        f"--working-directory={current / manage_py.parent}",
        f"--property=EnvironmentFile={current}/.onebox/release.env",
        f"--property=EnvironmentFile=-{current}/{REFS_FILE}",
        f"--property=EnvironmentFile={paths.secrets}",
        *[f"--property={value}" for value in INTERACTIVE_SANDBOX],
        f"--property=ReadWritePaths={paths.shared}",
        f"--setenv=ONEBOX_MANAGE_ARGS={stashed}",
        f"--setenv=PATH={current}/.venv/bin:/usr/local/bin:/usr/bin:/bin",
        f"{current}/.venv/bin/python",
        "-c",
        launcher,
        *([str(script)] if script else []),
    ]
    return argv, dict(BASE_ENV)


def dbshell(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """dbshell APP: the database's own client, connected to the app's database."""
    if len(args) != 1:
        raise Refused("usage: dbshell APP")
    paths = app_paths(args[0])
    settings = json.loads(paths.settings.read_text()) if paths.settings.is_file() else {}
    database = settings.get("database", {})
    if database.get("url"):
        raise Refused("the database is on an external server: use its own client or console")
    app, name = paths.app, paths.app.replace("-", "_")
    argv = {
        "sqlite": ["runuser", "-u", app, "--", "sqlite3", str(paths.db / "db.sqlite3")],
        "mysql": ["mariadb", "--protocol=socket", "--user=root", name],
        "postgresql": ["runuser", "-u", "postgres", "--", "psql", "--dbname", name],
    }.get(database.get("engine", "sqlite"))
    if argv is None:
        raise Refused("this app's database engine is unknown: run `onebox setup`")
    return argv, dict(BASE_ENV)


def ca(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """ca: the root certificate of Caddy's internal CA (public: clients must trust it)."""
    if args:
        raise Refused("usage: ca")
    if not Path(CA_ROOT).is_file():
        raise Refused("this server has no internal CA yet")
    return ["cat", CA_ROOT], dict(BASE_ENV)


def dump(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """dump APP SNAPSHOT NAME: a backup's database dump, from the server's repository."""
    if len(args) != 3 or not SNAPSHOT.match(args[1]) or not DUMP_NAME.match(args[2]):
        raise Refused("usage: dump APP SNAPSHOT DUMP_NAME")
    from .backup import load_settings, repositories

    paths = app_paths(args[0])
    repo = repositories(paths, load_settings(paths))[0]
    return ["restic", "dump", "--quiet", "--no-lock", args[1], args[2]], repo.env


def db_access(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """db-access APP, on a database host: the CA's certificate and the app's password as
    JSON, for the app hosts' setup (which reads it into memory and never prints it)."""
    if len(args) != 1 or not APP.match(args[0]):
        raise Refused("usage: db-access APP")
    if not AppPaths(args[0]).db_host_password.is_file():
        raise Refused(f"no database of {args[0]!r} on this host: `onebox setup` makes it")
    argv = ["/usr/bin/python3", "-P", "-m", "onebox_agent.db_host", args[0]]
    return argv, {**BASE_ENV, "PYTHONPATH": str(AGENT_HOME)}


def roll_lock(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """roll-lock APP TOKEN HOLDER deploy|rollback: the roll lock of a rolling deploy or
    rollback, held until standard input closes (lock.py)."""
    from .lock import HOLDER, ROLL_ACTIONS, TOKEN

    usage = "usage: roll-lock APP TOKEN HOLDER deploy|rollback"
    if len(args) != 4 or not TOKEN.fullmatch(args[1]) or not HOLDER.fullmatch(args[2]):
        raise Refused(usage)
    if args[3] not in ROLL_ACTIONS:
        raise Refused(usage)
    paths = app_paths(args[0])
    argv = ["/usr/bin/python3", "-P", "-m", "onebox_agent.lock", str(paths.roll_lock), *args[1:]]
    return argv, {**BASE_ENV, "PYTHONPATH": str(AGENT_HOME)}


def export(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """export APP image|secrets: the newest exported image (an oci-archive), or the
    app's secrets as JSON (for a Kubernetes Secret; never written to a file here)."""
    if len(args) != 2 or args[1] not in ("image", "secrets"):
        raise Refused("usage: export APP image|secrets")
    paths = app_paths(args[0])
    if args[1] == "secrets":
        argv = ["/usr/bin/python3", "-P", "-m", "onebox_agent.export", "secrets", paths.app]
        return argv, {**BASE_ENV, "PYTHONPATH": str(AGENT_HOME)}
    folder = IMAGE_EXPORTS / paths.app
    archives = sorted(folder.glob("*.tar")) if folder.is_dir() else []
    if not archives:
        raise Refused("no image was exported: `onebox export kubernetes` makes one")
    return ["cat", str(archives[-1])], dict(BASE_ENV)

"""`onebox setup` on the server: facts, then only the changes that are needed."""

from __future__ import annotations

import json
import os
import platform
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import (
    isolation,
    public_files,
    site_check,
    ssh_access,
    updates,
)
from .database import Engine
from .paths import (
    AGENT_HOME,
    CACHE,
    CADDY_DROPIN,
    CADDY_LOGS,
    CADDY_SITES,
    CADDYFILE,
    ENTRY,
    ETC,
    TOOLS,
    UNIT_DIR,
    UV,
    AppPaths,
)
from .protocol import AgentError, ExitCode
from .restic import Repository
from .system import (
    apt_install,
    ensure_dir,
    format_env_file,
    group_members,
    read_env_file,
    refresh_package_lists,
    run,
    tail,
    user_exists,
    write_file,
)

BASE_PACKAGES = [
    "caddy",
    "python3-venv",
    "python3-dev",
    "ca-certificates",
    "curl",
    "restic",
]
SUPPORTED_DEBIAN = ("12", "13")
CADDY_MARK = "# Managed by onebox"


def os_release() -> dict[str, str]:
    values = {}
    path = Path("/etc/os-release")
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
    return values


def facts() -> dict[str, Any]:
    release = os_release()
    return {
        "os_id": release.get("ID", "unknown"),
        "os_version": release.get("VERSION_ID", ""),
        "os_name": release.get("PRETTY_NAME", "unknown system"),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def check_supported() -> dict[str, Any]:
    found = facts()
    if found["os_id"] != "debian" or found["os_version"] not in SUPPORTED_DEBIAN:
        raise AgentError(
            f"this server runs {found['os_name']}; onebox supports Debian 12 and 13",
            hint="install Debian 12 (bookworm) or 13 (trixie) on the server, or pick another one",
            code=ExitCode.UNSUPPORTED,
        )
    return found


def ensure_packages(packages: list[str], security: dict, notes: list[str]) -> bool:
    """Security updates first, so the services installed and started next start patched;
    then setup's packages (needrestart among them), which name what still runs old code."""
    updated = False
    if "updates" not in security.get("skip", {}):
        refresh_package_lists(stale_after=3600)
        updated = updates.install_waiting(notes)
    installed = bool(apt_install(packages))
    if updated:
        updates.restart_safe_services()
    return updated or installed


def ensure_database(paths: AppPaths, db: Engine) -> bool:
    """The database, its user and the app's DATABASE_* secrets."""
    values = read_env_file(paths.secrets)
    if db.name == "sqlite" and values.get("DATABASE_URL", "").startswith(("mysql", "postgres")):
        values.pop("DATABASE_URL")  # moved back to SQLite: the old URL would win
    changed = db.ensure(values)
    if changed:
        write_file(paths.secrets, format_env_file(values, SECRETS_HEADER), mode=0o600)
    return changed


def install_agent() -> bool:
    """A copy of this agent for the scheduled jobs (backups run without a client), and
    /usr/local/sbin/onebox-agent, through which the client runs the agent's fixed
    commands (logs, manage, dbshell, ca, dump), whoever logs in."""
    files, stale = agent_files()
    changed = write_file(ENTRY, files.pop(ENTRY), mode=0o755)
    for path, content in files.items():
        changed |= write_file(path, content)
    for path in stale:
        path.unlink()
        changed = True
    return changed


def agent_files() -> tuple[dict[Path, str], list[Path]]:
    """The entry and the agent's modules where they are installed, and the installed
    modules this agent no longer has."""
    source = Path(__file__).parent
    target = AGENT_HOME / "onebox_agent"
    files = {ENTRY: ssh_access.ENTRY_SOURCE.read_text()}
    files |= {target / path.name: path.read_text() for path in sorted(source.glob("*.py"))}
    stale = [p for p in sorted(target.glob("*.py")) if not (source / p.name).exists()]
    return files, stale


def ensure_backups(paths: AppPaths, settings: dict, notes: list[str]) -> bool:
    """The backup key (made once, here), the on-server repository, the off-site one."""
    changed = ensure_dir(paths.backups, mode=0o700)
    changed |= ensure_dir(paths.backup_tmp, mode=0o700)
    if not paths.backup_key.is_file():
        write_file(paths.backup_key, secrets.token_urlsafe(32) + "\n", mode=0o600)
        notes.append(
            "a backup key was made: backups cannot be read without it. Run `onebox backup key` "
            "and keep it in your password manager, away from this server"
        )
        changed = True
    changed |= write_file(paths.settings, json.dumps(settings, indent=2) + "\n", mode=0o600)
    local = Repository(str(paths.backup_repo), paths, "server")
    changed |= local.ensure()
    offsite = settings["backup"].get("offsite", "")
    if offsite.startswith("sftp:") and not paths.backup_ssh_key.is_file():
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"onebox-backup-{paths.app}",
                "-f",
                str(paths.backup_ssh_key),
            ]
        )
        changed = True
    if offsite:
        remote = Repository(offsite, paths, "off-site")
        try:
            changed |= remote.ensure(copy_from=local)
        except AgentError as exc:
            notes.append(f"off-site repository not ready: {exc.message}. {exc.hint}".strip())
    return changed


def timer_files(paths: AppPaths, files: dict[str, str]) -> dict[Path, str]:
    """The backup and verify jobs' units, where they go."""
    found = {}
    for job in ("backup", "verify"):
        name = f"onebox-{paths.app}-{job}"
        found[UNIT_DIR / f"{name}.service"] = files[f"{job}_service"]
        found[UNIT_DIR / f"{name}.timer"] = files[f"{job}_timer"]
    return found


def ensure_timers(paths: AppPaths, files: dict[str, str], backup: dict) -> bool:
    changed = False
    for path, text in timer_files(paths, files).items():
        changed |= write_file(path, text)
    if changed:
        run(["systemctl", "daemon-reload"])
    commands = timer_commands(paths, backup, changed)
    for argv in commands:
        run(argv, what=f"{argv[1]} {argv[-1]}")
    return changed or bool(commands)


def timer_commands(paths: AppPaths, backup: dict, units_changed: bool) -> list[list[str]]:
    """The systemctl calls that make each job's timer as [backup] wants it: on (restarted
    when its units changed) or off."""
    commands = []
    for job, calendar in (("backup", backup["schedule"]), ("verify", backup["verify"])):
        timer = f"onebox-{paths.app}-{job}.timer"
        enabled = run(["systemctl", "is-enabled", timer], check=False).stdout.strip() == "enabled"
        wanted = calendar != "off"
        if wanted and (units_changed or not enabled):
            commands += [["systemctl", "enable", "--now", timer], ["systemctl", "restart", timer]]
        elif not wanted and enabled:
            commands.append(["systemctl", "disable", "--now", timer])
    return commands


def check_calendar(calendar: str, where: str) -> None:
    if calendar == "off":
        return
    result = run(["systemd-analyze", "calendar", calendar], check=False)
    if result.returncode != 0:
        raise AgentError(
            f"{where} = {calendar!r} is not a calendar expression systemd accepts; "
            "the timers were left as they were",
            output=tail(result.stderr),
            hint='use one like "daily", "*-*-* 03:15:00" or "Sun *-*-* 04:15:00", or "off"',
            code=ExitCode.CONFIG,
        )


def uv_is(version: str) -> bool:
    """The uv setup installed is this version (what ensure_uv and its plan ask)."""
    found = run([str(UV), "--version"], check=False).stdout.split() if UV.exists() else []
    return found[1:2] == [version]


def ensure_uv(version: str) -> bool:
    if uv_is(version):
        return False
    run([sys.executable, "-m", "venv", "--clear", str(TOOLS / "uv")], what="creating uv's venv")
    run(
        [str(TOOLS / "uv" / "bin" / "pip"), "install", "--quiet", f"uv=={version}"],
        what=f"installing uv {version}",
        timeout=600,
    )
    return True


def ensure_app_user(app: str, reader: str = "caddy") -> bool:
    changed = False
    if not user_exists(app):
        run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                str(AppPaths(app).root),
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                app,
            ],
            what="creating the app user",
        )
        changed = True
    # The proxy (Caddy, or an adopted Apache: www-data) serves static and media files and
    # connects to the app's sockets: it reads the app's group-readable folders.
    if reader not in group_members(app):
        run(["usermod", "--append", "--groups", app, reader])
        if reader == "caddy":  # a running process keeps its old groups
            run(["systemctl", "try-restart", "caddy"])
        changed = True  # (Apache's children take the group at the deploy's graceful reload)
    return changed


def ensure_layout(paths: AppPaths) -> bool:
    app = paths.app
    results = [
        ensure_dir(paths.root, mode=0o750, group=app),
        ensure_dir(paths.releases, mode=0o750, group=app),
        ensure_dir(paths.venvs, mode=0o750, group=app),
        ensure_dir(paths.slots, mode=0o750, group=app),
        ensure_dir(paths.shared, mode=0o750, group=app),
        ensure_dir(paths.media, mode=0o2750, owner=app, group=app),
        ensure_dir(paths.db, mode=0o700, owner=app, group=app),
        ensure_dir(paths.state, mode=0o700, owner=app, group=app),
        ensure_dir(ETC, mode=0o700),
        ensure_dir(CACHE, mode=0o700),
    ]
    for folder in isolation.old_staging(paths):  # root no longer stages dumps there
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
    return any(results)


def ensure_units(paths: AppPaths, files: dict[str, str]) -> bool:
    unit_changed = write_file(paths.unit_template, files["unit"])
    tmpfiles_changed = write_file(paths.tmpfiles, files["tmpfiles"])
    if unit_changed:
        run(["systemctl", "daemon-reload"])
    if tmpfiles_changed or not paths.run.is_dir():
        run(["systemd-tmpfiles", "--create", str(paths.tmpfiles)])
    return unit_changed or tmpfiles_changed


CADDY_DROPIN_TEXT = """# Written by onebox: Caddy's admin API listens on /run/caddy/admin.sock (see
# the Caddyfile), in this folder that only Caddy and root may enter.
[Service]
RuntimeDirectory=caddy
RuntimeDirectoryMode=0700
"""


def ensure_caddy(paths: AppPaths, caddyfile: str) -> bool:
    ensure_dir(CADDY_SITES)
    ensure_access_log(paths)
    # (and a restart if Caddy started before the app's shared folder was mounted without
    # links: it would still follow them)
    return install_caddyfile(caddyfile, restart=not public_files.caddy_sees_mount(paths))


def ensure_balancer(caddyfile: str) -> bool:
    """A load balancer's Caddy ([servers] lb): its own Caddyfile, no app's site."""
    return install_caddyfile(caddyfile)


def install_caddyfile(caddyfile: str, restart: bool = False) -> bool:
    """onebox's Caddyfile in place (the user's own kept beside it) and Caddy running it."""
    if CADDYFILE.is_file():
        old = CADDYFILE.read_text()
        backup = CADDYFILE.with_name("Caddyfile.before-onebox")
        if CADDY_MARK not in old and not backup.exists():
            write_file(backup, old)  # the user's own Caddyfile is never lost
    moved = write_file(CADDY_DROPIN, CADDY_DROPIN_TEXT)
    if moved:
        run(["systemctl", "daemon-reload"])
    # A reload reaches Caddy at the new config's admin address: where that moved (off
    # TCP, onto the socket), only a restart gets there.
    changed = install_caddy_config(CADDYFILE, caddyfile, reload=not moved)
    # One restart, for whichever reason: stopped, its admin API moved, or the caller's.
    if moved or restart or not site_check.caddy_active():
        run(["systemctl", "restart", "caddy"], what="starting Caddy")
        changed = True
    return changed or moved


def ensure_access_log(paths: AppPaths) -> None:
    """The app's access log file, Caddy's own before its site names it: `caddy validate`
    (as root) would otherwise create it as root's, and Caddy could not open it."""
    ensure_dir(CADDY_LOGS, mode=0o750, owner="caddy", group="caddy")
    if paths.access_log.exists() or paths.access_log.is_symlink():
        return
    # (in Caddy's folder: never through a link it placed there)
    fd = os.open(paths.access_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        caddy = pwd.getpwnam("caddy")
        os.fchown(fd, caddy.pw_uid, caddy.pw_gid)
    finally:
        os.close(fd)


def install_caddy_config(path: Path, content: str, reload: bool = True) -> bool:
    """Put a Caddy config live only if Caddy accepts it; on failure the old one stays.

    A site file is checked through the main Caddyfile (which imports it), so it is put
    in place first and taken back when validation fails.
    """
    old = path.read_text() if path.is_file() else None
    if old == content:
        return False
    write_file(path, content)
    check = caddy_validate()
    if check.returncode != 0:
        if old is None:
            path.unlink()
        else:
            write_file(path, old)
        raise AgentError(
            f"Caddy rejected the new {path}; the previous configuration is kept",
            output=tail(check.stdout + check.stderr),
            hint="if you override onebox's Caddy template, fix it",
        )
    if reload:
        run(["systemctl", "reload-or-restart", "caddy"], what="reloading Caddy")
    return True


def caddy_validate() -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="onebox-caddy-") as home:
        # validate provisions modules (the internal CA among them): keep that out of
        # root's home and Caddy's own data.
        return run(
            ["caddy", "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
            env={"HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home},
            check=False,
        )


def ensure_secrets(paths: AppPaths) -> bool:
    """The 0600 secrets file, with a SECRET_KEY made here: it never leaves the server."""
    values = read_env_file(paths.secrets)
    changed = False
    if "SECRET_KEY" not in values:
        values["SECRET_KEY"] = secrets.token_urlsafe(50)
        changed = True
    if values.get("DJANGO_SECRET_KEY") is None:  # the other name settings files often read
        values["DJANGO_SECRET_KEY"] = values["SECRET_KEY"]
        changed = True
    if changed:
        write_file(paths.secrets, format_env_file(values, SECRETS_HEADER), mode=0o600)
    return changed


SECRETS_HEADER = """Secrets of this app, read by systemd (EnvironmentFile). Mode 0600, owner root.
Change them with `onebox env set KEY=VALUE`; never commit them."""

"""What code running as the app (a Django RCE, a malicious dependency) can reach, checked
from the app's own uid; and changes of setup still waiting for their confirmation.

For `onebox audit`: each check tries as the app what an attacker would, so a protection
that is missing on this server fails here whatever onebox believes it set up.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from . import guard
from .paths import AppPaths
from .system import run, user_exists

Check = dict[str, str]
SETUP = "run `onebox setup`"


def result(name: str, ok: bool | None, detail: str, fix: str = "") -> Check:
    """One audit check: pass, fail, or warn (ok None: worth knowing, not a hole)."""
    status = "pass" if ok else ("warn" if ok is None else "fail")
    return {"name": name, "status": status, "detail": detail, "fix": "" if ok else fix}


# Run as the app's user: which ways to Caddy's admin API, and to root's files, are open.
PROBE = r"""
import os, socket, sys
admin, secrets = [], []
try:
    socket.create_connection(("127.0.0.1", 2019), timeout=2).close()
    admin.append("127.0.0.1:2019")
except OSError:
    pass
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect("/run/caddy/admin.sock")
    s.close()
    admin.append("/run/caddy/admin.sock")
except OSError:
    pass
for path in sys.argv[1:]:
    try:
        open(path, "rb").close()
        secrets.append(path)
    except OSError:
        pass
print(",".join(admin))
print(",".join(secrets))
"""


def check_app_isolation(paths: AppPaths) -> list[Check]:
    if not user_exists(paths.app):
        return [result("the app's user is set up", False, f"no user {paths.app}", SETUP)]
    root_files = [paths.secrets, paths.backup_key, paths.backup_env, paths.backup_ssh_key]
    out = run(
        ["/usr/bin/python3", "-c", PROBE, *map(str, root_files)], user=paths.app, check=False
    ).stdout.splitlines()
    admin, readable = [*out, "", ""][:2]
    staging = [p.name for p in old_staging(paths) if p.is_dir()]
    backups = paths.backups.stat() if paths.backups.is_dir() else None
    private = backups is not None and backups.st_uid == 0 and backups.st_mode & 0o077 == 0
    return [
        result(
            "the app cannot reach Caddy's admin API",
            not admin,
            f"reachable as {paths.app}: {admin}" if admin else "neither on TCP nor its socket",
            SETUP + " (it moves the admin API to a root-only Unix socket)",
        ),
        result(
            "the app cannot read root's secrets",
            not readable,
            f"readable as {paths.app}: {readable}" if readable else "secrets and backup keys",
            SETUP,
        ),
        result(
            "backups are staged where only root can write",
            private and not staging,
            f"{paths.backups} root-only: {private}"
            + (f"; app-owned staging left: {', '.join(staging)}" if staging else ""),
            SETUP,
        ),
        check_unit(paths),
    ]


def old_staging(paths: AppPaths) -> list[Path]:
    """Where onebox before 0.2 staged dumps: in the app's own folder (setup removes them)."""
    return [paths.db / ".onebox-dump", paths.db / ".onebox-restore"]


PRIVILEGED = re.compile(r"^\s*Exec\w*\s*=\s*[-@:]*[+!]", re.M)


def check_unit(paths: AppPaths) -> Check:
    """The app's unit runs everything as the app: no command with root's privileges (a
    `+` or `!` prefix) and no User= but the app's; such lines came in through a config
    value once, before onebox checked them."""
    if not paths.unit_template.is_file():
        return result("the app's unit runs nothing as root", False, "no unit", SETUP)
    text = paths.unit_template.read_text()
    users = set(re.findall(r"^\s*User\s*=\s*(\S*)", text, re.M))
    privileged = PRIVILEGED.findall(text)
    ok = not privileged and users == {paths.app}
    detail = (
        f"User={paths.app}, no privileged commands"
        if ok
        else f"User= {sorted(users)}, privileged lines: {len(privileged)}"
    )
    return result("the app's unit runs nothing as root", ok, detail, SETUP)


def check_guards() -> list[Check]:
    armed = guard.armed()
    if not armed:
        return [result("setup's changes are confirmed", True, "no undo waiting")]
    when = {name: guard.fires_at(name) for name in armed}
    detail = ", ".join(
        f"{name} (undone {time.strftime('%H:%M:%S', time.localtime(at))})"
        if at
        else f"{name} (its timer is gone: it will not fire)"
        for name, at in when.items()
    )
    return [
        result(
            "setup's changes are confirmed",
            False,
            "waiting for a confirming connection: " + detail,
            "run `onebox setup` again: it confirms them over a new connection",
        )
    ]

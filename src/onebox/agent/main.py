"""Entry point of the server side: read the request, run the action, report the result."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import (
    adopt,
    apache_site,
    audit,
    backup,
    cancel,
    deploy,
    envfile,
    guard,
    history,
    manage_args,
    provision,
    proxy_move,
    releases,
    restore,
    rollback,
    setup,
    status,
)
from .paths import AGENT_HOME
from .protocol import AgentError, ExitCode, emit
from .requests import Request, parse

ACTIONS = {
    "facts": lambda request, payload: provision.facts(),
    "adopt-inspect": lambda request, payload: adopt.inspect(request),
    "adopt-undo": lambda request, payload: apache_site.undo(request),
    "proxy-move": lambda request, payload: proxy_move.move(request),
    "setup": lambda request, payload: setup.setup(request),
    "deploy": deploy.deploy,
    "env-set": lambda request, payload: envfile.set_values(request),
    "env-unset": lambda request, payload: envfile.unset_values(request),
    "env-list": lambda request, payload: envfile.list_values(request),
    "status": lambda request, payload: status.status(request),
    "backup": lambda request, payload: backup.backup(request),
    "backups": lambda request, payload: backup.list_backups(request),
    "restore": lambda request, payload: restore.restore(request),
    "verify": lambda request, payload: restore.verify(request),
    "backup-key": lambda request, payload: backup.show_key(request),
    "maintenance": lambda request, payload: restore.maintenance_mode(request),
    "releases": lambda request, payload: releases.list_releases(request),
    "rollback": rollback.rollback,
    "history": lambda request, payload: history.read(request),
    "audit": lambda request, payload: audit.audit(request),
    "confirm": lambda request, payload: guard.confirm(request),
    "cancel": lambda request, payload: cancel.cancel(request),
    "manage-args": lambda request, payload: manage_args.stash(request),
}


READ_ONLY = {"facts", "adopt-inspect"}  # (these leave even onebox's own agent as it is)


def main(workdir: str) -> int:
    os.umask(0o022)
    root = Path(workdir)
    data = json.loads((root / "request.json").read_text())
    (root / "request.json").unlink()  # it may hold secrets (env set): gone as soon as read
    if os.geteuid() != 0:
        emit("error", message="the onebox agent must run as root", hint="use a sudo-capable user")
        return ExitCode.FAILED
    try:
        request = parse(data)
    except AgentError as exc:
        emit("error", message=exc.message, hint="please report it: client and agent disagree")
        return exc.code
    request.login = request.login or os.environ.get("SUDO_USER") or "root"
    started = time.time()
    code, result, error = run_action(request, root)
    history.record(request, code, started, result, error)
    return code


def run_action(request: Request, root: Path) -> tuple[int, dict | None, str]:
    """Run it, report the result or the error as events; (exit code, result, error)."""
    try:
        dry = getattr(request, "dry_run", False)  # (a dry run changes nothing, this neither)
        reads_only = request.action in READ_ONLY
        if not reads_only and not dry and AGENT_HOME.is_dir():
            provision.install_agent()  # the timers' copy stays the version last used
        result = ACTIONS[request.action](request, root / "payload")
    except AgentError as exc:
        emit("error", message=exc.message, hint=exc.hint, output=exc.output, command=exc.command)
        return exc.code, None, exc.message
    except OSError as exc:
        if not disk_full(exc):
            return internal_error(exc)
        error = DISK_FULL
        emit("error", message=error.message, hint=error.hint, output=str(exc)[-1000:])
        return error.code, None, error.message
    except Exception as exc:
        return internal_error(exc)
    emit("result", data=result, run=request.run)
    return 0, result, ""


def disk_full(exc: OSError) -> bool:
    """ENOSPC, also inside shutil.Error (copytree gathers its errors as text)."""
    return exc.errno == errno.ENOSPC or "No space left on device" in str(exc)


DISK_FULL = AgentError(
    "the server's disk is full (no space left on device)",
    hint="free some space (`onebox releases` keeps [deploy] keep releases; `apt-get clean`; "
    "old logs), then try again; a deploy left the live release serving",
)


def internal_error(exc: Exception) -> tuple[int, dict | None, str]:
    """A bug in onebox: still a report, with where it happened."""
    emit(
        "error",
        message=f"internal error in the onebox agent: {exc!r}",
        output="".join(traceback.format_exc(limit=-4)),
        hint="please report it; the server was left as the last step reported",
    )
    return ExitCode.FAILED, None, f"internal error: {exc!r}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

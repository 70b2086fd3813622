"""Entry point of the server side: read the request, run the action, report the result."""

from __future__ import annotations

import errno
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import history, provision
from .paths import AGENT_HOME
from .protocol import AgentError, ExitCode, emit
from .requests import Request, parse

# Each action: the module that does it, its function, and what that takes (nothing, the
# request, or the request and the payload folder). A module is imported when its action
# runs: one call runs one action, and importing them all cost each call about 40 ms.
ACTIONS: dict[str, tuple[str, str, int]] = {
    "facts": ("provision", "facts", 0),
    "adopt-inspect": ("adopt", "inspect", 1),
    "adopt-undo": ("apache_site", "undo", 1),
    "proxy-move": ("proxy_move", "move", 1),
    "setup": ("setup", "setup", 1),
    "deploy": ("deploy", "deploy", 2),
    "env-set": ("envfile", "set_values", 1),
    "env-unset": ("envfile", "unset_values", 1),
    "env-list": ("envfile", "list_values", 1),
    "status": ("status", "status", 1),
    "backup": ("backup", "backup", 1),
    "backups": ("backup", "list_backups", 1),
    "restore": ("restore", "restore", 1),
    "verify": ("restore", "verify", 1),
    "backup-key": ("backup", "show_key", 1),
    "maintenance": ("restore", "maintenance_mode", 1),
    "releases": ("releases", "list_releases", 1),
    "rollback": ("rollback", "rollback", 2),
    "after-switch": ("rolling", "after_switch", 1),
    "discard-held": ("rolling", "discard_held", 1),
    "history": ("history", "read", 1),
    "audit": ("audit", "audit", 1),
    "confirm": ("guard", "confirm", 1),
    "cancel": ("cancel", "cancel", 1),
    "manage-args": ("manage_args", "stash", 1),
    "export-image": ("export", "export_image", 1),
}


def perform(request: Request, payload: Path) -> dict | None:
    module, function, takes = ACTIONS[request.action]
    handler = getattr(importlib.import_module(f".{module}", __package__), function)
    return handler(*(request, payload)[:takes])


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
        result = perform(request, root / "payload")
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

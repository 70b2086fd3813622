"""Changes that could lock the user out are applied with an automatic undo.

Before setup changes the firewall or sshd, it arms a guard: a systemd timer that runs the
undo script after GUARD_SECONDS. Setup's last act is to return; the client then opens a
brand-new SSH connection (no shared master) and sends `confirm`, which disarms the
guards. If that connection cannot be made, nobody disarms them and the server puts the
old firewall and sshd settings back by itself — the session that ran setup, and the
user, are never shut out for longer than that.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .paths import GUARDS
from .protocol import AgentError
from .requests import ConfirmRequest
from .system import ensure_dir, run, write_file

GUARD_SECONDS = 120
window = GUARD_SECONDS  # [security] confirm_within, set by setup and confirm


def set_window(seconds: int | None) -> None:
    global window
    window = int(seconds or GUARD_SECONDS)


NAME = re.compile(r"^[a-z0-9-]+$")


def unit(name: str) -> str:
    return f"onebox-guard-{name}"


def arm(name: str, undo: str, seconds: int | None = None) -> None:
    """Run the shell script `undo` in `seconds` unless confirm(name) comes first."""
    seconds = seconds or window
    disarm(name)
    ensure_dir(GUARDS, mode=0o700)
    script = GUARDS / f"{name}.sh"
    # the undo in a subshell, then the script removes itself: fired, it is no longer armed
    fires = int(time.time() + seconds)
    text = (
        f"#!/bin/sh\n# armed by onebox setup; see agent/guard.py\n# fires at {fires}\n"
        f"(\n{undo}\n)\nrm -f {script}\n"
    )
    write_file(script, text, mode=0o700)
    result = run(
        [
            "systemd-run",
            "--quiet",
            "--collect",
            f"--unit={unit(name)}",
            f"--on-active={seconds}",
            "--timer-property=AccuracySec=1s",
            f"--description=onebox: undo the {name} change unless confirmed",
            "/bin/sh",
            str(script),
        ],
        check=False,
    )
    if result.returncode != 0:
        raise AgentError(
            f"could not arm the automatic undo for the {name} change; nothing was changed",
            output=result.stderr,
        )


def disarm(name: str) -> bool:
    """Stop the guard's timer (and a run in progress); True if one was armed."""
    armed = (GUARDS / f"{name}.sh").exists()
    run(["systemctl", "stop", f"{unit(name)}.timer", f"{unit(name)}.service"], check=False)
    run(["systemctl", "reset-failed", f"{unit(name)}.timer", f"{unit(name)}.service"], check=False)
    (GUARDS / f"{name}.sh").unlink(missing_ok=True)
    return armed


def armed() -> list[str]:
    return sorted(p.stem for p in GUARDS.glob("*.sh")) if GUARDS.is_dir() else []


def fires_at(name: str) -> float:
    """When the armed guard's undo runs (epoch seconds); 0 if its timer is not running
    (a reboot stops it: the change then stays, unconfirmed)."""
    active = run(["systemctl", "is-active", f"{unit(name)}.timer"], check=False).stdout.strip()
    found = re.search(r"^# fires at (\d+)$", (GUARDS / f"{name}.sh").read_text(), re.M)
    return float(found.group(1)) if found and active == "active" else 0.0


def confirm(request: ConfirmRequest) -> dict[str, Any]:
    """Called over a fresh connection: it worked, so keep the changes. With `lockdown`
    (the connection is the deploy user's: its login works), turn root and password
    login off next, guarded again: the client confirms that with one more connection."""
    from . import ssh_access

    set_window(request.confirm_within)
    names = [n for n in request.names if NAME.match(n)]
    kept = [name for name in names if disarm(name)]
    again: list[str] = []
    if request.lockdown:
        if request.login != ssh_access.DEPLOY_USER:
            raise AgentError("root login stays on: this connection is not the deploy user's")
        _, armed_now = ssh_access.lockdown()
        again = ["ssh-lockdown"] if armed_now else []
    return {"confirmed": kept, "confirm_again": again}

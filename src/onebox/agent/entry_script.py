#!/usr/bin/python3 -I
"""/usr/local/sbin/onebox-agent: the one command onebox's deploy user may run as root.

`onebox setup` installs this file and /etc/sudoers.d/onebox. Two forms:

    onebox-agent                   the agent: a tar stream on stdin (onebox's code and the
                                   request); before setup (and for root) the client runs
                                   this same file as `python3 -I -c SOURCE`
    onebox-agent COMMAND ARGS...   logs, manage, run, dbshell, ca or dump: the command line is
                                   built by onebox's installed agent from checked arguments

Before it hands over, it writes the operation into the app's history itself (see
history.py): the agent a client ships runs only after that line exists, so no client
can leave an operation out. Standard library only, and self-contained (it is copied on
its own); `-I` keeps the caller's environment and paths out of it.
"""

import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from typing import Any

INSTALLED_AGENT = "/opt/onebox/agent"  # (paths.AGENT_HOME; this file stands alone)
HISTORY = "/var/log/onebox"  # (paths.LOGS)
# What the server's history records as it starts (history.AUDITED and the access to
# data: `env list --reveal`); the outcome is added by the agent when it ends.
AUDITED = {
    "setup", "deploy", "rollback", "restore", "backup", "verify", "env-set", "env-unset",
    "maintenance", "cancel", "confirm",
}  # fmt: skip


def stream() -> int:
    workdir = tempfile.mkdtemp(prefix="onebox-agent-")
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            safe: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            tar.extractall(workdir, **safe)
        started(os.path.join(workdir, "request.json"))
        sys.path.insert(0, workdir)
        from onebox_agent.launch import launch

        return launch(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def started(request_file: str) -> None:
    """The history line of an operation as it begins (never its secrets: names only)."""
    try:
        with open(request_file) as handle:
            request = json.load(handle)
    except (OSError, ValueError):
        return  # the agent reports a broken request itself
    action, app = request.get("action"), request.get("app")
    revealing = action == "env-list" and request.get("reveal")
    if not app or request.get("dry_run") or (action not in AUDITED and not revealing):
        return
    entry = {"action": action, "by": request.get("by", "?"), "run": request.get("run", "")}
    if revealing:
        entry["detail"] = "secret values shown"
    record(app, {**entry, "result": "started"})


def record(app: str, fields: dict[str, Any]) -> None:
    """One line appended to the app's history (a failure to write never stops the work)."""
    login = os.environ.get("SUDO_USER") or "root"
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "login": login}
    try:
        os.makedirs(HISTORY, mode=0o700, exist_ok=True)
        path = os.path.join(HISTORY, f"{app}.history.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps({**entry, **fields}) + "\n").encode())  # one write
        finally:
            os.close(fd)
    except OSError:
        pass


def command(argv: list[str]) -> int:
    sys.path.insert(0, INSTALLED_AGENT)
    from onebox_agent.commands import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]) if len(sys.argv) > 1 else stream())

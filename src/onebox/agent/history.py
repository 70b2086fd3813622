"""The audit trail: every operation that changes an app's server, one JSON line each.

`/var/log/onebox/<app>.history.jsonl` (0600, root) gets who asked (the client's
user@machine, and the login that ran sudo on the server), what, when, how long, and the
result; `onebox history` reads it back. Only the server writes it: a client cannot
leave an operation out. Never a secret: `env set` records the names it set, not values.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from . import entry_script
from .requests import (
    ConfirmRequest,
    EnvListRequest,
    EnvSetRequest,
    EnvUnsetRequest,
    HistoryRequest,
    Request,
)

# Recorded as they start, by the installed entry (entry_script.py), then as they end, here;
# and the timers' runs.
AUDITED = entry_script.AUDITED | {"schedule"}

# What says the most about each operation's result, in the order looked for.
DETAIL_KEYS = ("release", "restored", "id", "verified", "changed", "maintenance")


def path_for(app: str) -> Path:
    return Path(entry_script.HISTORY) / f"{app}.history.jsonl"


def record(request: Request, code: int, started: float, result: dict | None, error: str) -> None:
    """The line of an operation's outcome (its start was written before it ran)."""
    action, app = request.action, request.app
    if not app or getattr(request, "dry_run", False):
        return  # (a dry run changed nothing)
    revealing = isinstance(request, EnvListRequest) and request.reveal
    if action not in AUDITED and not revealing:
        return
    entry_script.record(
        app,
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "action": action,
            "by": request.by or "?",
            "login": request.login or "?",
            "run": request.run,
            "result": "ok" if code == 0 else "failed",
            "exit": code,
            "seconds": round(time.time() - started, 2),
            "detail": error or describe(request, result or {}),
        },
    )


def ran(app: str, command: str, detail: str = "") -> None:
    """A command of the installed agent (manage, run, dbshell, logs, dump), as it starts:
    it then becomes the command itself, with no outcome to add."""
    entry_script.record(app, {"action": command, "result": "ran", "detail": detail})


def describe(request: Request, result: dict) -> str:
    if isinstance(request, EnvSetRequest):
        return "set " + ", ".join(sorted(request.values))
    if isinstance(request, EnvUnsetRequest):
        return "unset " + ", ".join(sorted(request.keys))
    if isinstance(request, EnvListRequest):
        return "secret values shown"
    if isinstance(request, ConfirmRequest):
        return "root and password logins off" if request.lockdown else ", ".join(request.names)
    if request.action == "rollback" and result.get("release"):
        return f"{result.get('previous')} -> {result['release']}"
    for key in DETAIL_KEYS:
        if key in result and result[key] not in (None, "", []):
            value = result[key]
            if isinstance(value, dict):
                value = value.get("restored") or value.get("id") or ""
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            return f"{key} {value}"
    return ""


def read(request: HistoryRequest) -> dict[str, Any]:
    path = path_for(request.app)
    lines = path.read_text().splitlines() if path.is_file() else []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a full disk
    return {"entries": merged(entries)[-int(request.lines) :], "path": str(path)}


def merged(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An operation's start line goes once its outcome is in (the same run); one with no
    outcome stays, "started": it was killed, or the agent it ran never said how it ended."""
    ended = {e.get("run") for e in entries if e.get("result") != "started" and e.get("run")}
    return [e for e in entries if e.get("result") != "started" or e.get("run") not in ended]

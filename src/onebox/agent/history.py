"""The audit trail: every operation that changes an app's server, one JSON line each.

`/var/log/onebox/<app>.history.jsonl` (0600, root) gets who asked (the client's
user@machine, and the login that ran sudo on the server), what, when, how long, and the
result; `onebox history` reads it back. Only the server writes it: a client cannot
leave an operation out. Never a secret: `env set` records the names it set, not values.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .requests import EnvSetRequest, EnvUnsetRequest, HistoryRequest, Request

HISTORY = Path("/var/log/onebox")

AUDITED = {
    "setup",
    "deploy",
    "rollback",
    "restore",
    "backup",
    "verify",
    "env-set",
    "env-unset",
    "maintenance",
    "schedule",
}

# What says the most about each operation's result, in the order looked for.
DETAIL_KEYS = ("release", "restored", "id", "verified", "changed", "maintenance")


def path_for(app: str) -> Path:
    return HISTORY / f"{app}.history.jsonl"


def record(request: Request, code: int, started: float, result: dict | None, error: str) -> None:
    """Append one line; a failure to write it never fails the operation itself."""
    action, app = request.action, request.app
    if action not in AUDITED or not app or getattr(request, "dry_run", False):
        return  # (a dry run changed nothing)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "action": action,
        "by": request.by,
        "login": request.login,
        "result": "ok" if code == 0 else "failed",
        "exit": code,
        "seconds": round(time.time() - started, 2),
        "detail": error or describe(request, result or {}),
    }
    try:
        HISTORY.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path_for(app), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())  # one write: lines never mix
        finally:
            os.close(fd)
    except OSError:
        pass


def describe(request: Request, result: dict) -> str:
    if isinstance(request, EnvSetRequest):
        return "set " + ", ".join(sorted(request.values))
    if isinstance(request, EnvUnsetRequest):
        return "unset " + ", ".join(sorted(request.keys))
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
    for line in lines[-int(request.lines) :]:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a full disk
    return {"entries": entries, "path": str(path)}

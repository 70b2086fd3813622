"""Entry point of the systemd timers: `python3 -m onebox_agent.scheduled backup|verify APP`.

Runs the same code as `onebox backup` and `onebox backup verify`, with plain-text progress
for the journal and a non-zero exit (a failed unit, shown by `onebox status`) on failure.
`... scheduled ran APP NAME` is the ExecStopPost of a [schedule] command's unit: it
records the run that just ended in the app's history.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from . import backup, history, protocol, restore
from .requests import BackupRequest, ScheduledRequest, VerifyRequest


def main(argv: list[str]) -> int:
    os.umask(0o022)
    protocol.PLAIN = True
    if argv[:1] == ["ran"]:
        return record_run(*argv[1:])
    job, app = argv
    by = f"{job} timer"
    request: BackupRequest | VerifyRequest = (
        BackupRequest(app=app, by=by, login="root", reason="scheduled")
        if job == "backup"
        else VerifyRequest(app=app, by=by, login="root")
    )
    started = time.time()
    try:
        if isinstance(request, BackupRequest):
            result = backup.backup(request)
        else:
            result = restore.verify(request)
    except protocol.AgentError as exc:
        history.record(request, exc.code, started, None, exc.message)
        print(f"{job} FAILED: {exc.message}", file=sys.stderr)
        if exc.output:
            print(exc.output, file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # a bug: still recorded, so that status shows the failure
        backup.record(backup.AppPaths(app), job, ok=False, error=f"internal error: {exc!r}")
        raise
    history.record(request, 0, started, result, "")
    print(f"{job} done: {result.get('id')}")
    return 0


def record_run(app: str, name: str) -> int:
    """systemd tells ExecStopPost how the run ended: SERVICE_RESULT, EXIT_CODE, EXIT_STATUS."""
    result = os.environ.get("SERVICE_RESULT", "")
    status = os.environ.get("EXIT_STATUS", "")
    ok = result == "success"
    request = ScheduledRequest(app=app, by=f"{name} timer", login="root")
    unit = f"onebox-{app}-{name}.service"
    shown = subprocess.run(
        ["systemctl", "show", unit, "--value", "--property=ExecMainStartTimestampMonotonic"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    # systemd's monotonic clock is Python's: the run's length, whatever the wall clock did
    seconds = time.monotonic() - int(shown) / 1e6 if shown.isdigit() and int(shown) else 0
    started = time.time() - max(seconds, 0)
    error = "" if ok else f"{name} failed ({result}, exit status {status})"
    history.record(request, 0 if ok else 1, started, {"id": name}, error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

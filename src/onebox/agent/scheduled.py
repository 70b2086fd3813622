"""Entry point of the systemd timers: `python3 -m onebox_agent.scheduled backup|verify APP`.

Runs the same code as `onebox backup` and `onebox backup verify`, with plain-text progress
for the journal and a non-zero exit (a failed unit, shown by `onebox status`) on failure.
"""

from __future__ import annotations

import os
import sys
import time

from . import backup, history, protocol, restore


def main(argv: list[str]) -> int:
    os.umask(0o022)
    protocol.PLAIN = True
    job, app = argv
    request = {"app": app, "deployer": f"{job} timer", "reason": "scheduled"}
    audited = {**request, "action": job, "by": f"{job} timer", "login": "root"}
    started = time.time()
    try:
        result = (backup.backup if job == "backup" else restore.verify)(request)
    except protocol.AgentError as exc:
        history.record(audited, exc.code, started, None, exc.message)
        print(f"{job} FAILED: {exc.message}", file=sys.stderr)
        if exc.output:
            print(exc.output, file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # a bug: still recorded, so that status shows the failure
        backup.record(backup.AppPaths(app), job, ok=False, error=f"internal error: {exc!r}")
        raise
    history.record(audited, 0, started, result, "")
    print(f"{job} done: {result.get('id')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

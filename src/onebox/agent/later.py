"""Work that finishes after the client has its answer: stopping the old slot.

A deploy or rollback answers once traffic is on the new release (and probation passed);
the old slot's graceful stop (its in-flight requests, the proxy's last connections to
it) then goes on in the same detached unit (launch.py), still holding the deploy lock:
the next deploy waits for it (lock.py). Nothing here can fail the operation: traffic
has moved, and a slot that will not stop is stopped by systemd's own timeout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from . import lock

JOBS: list[Callable[[], None]] = []


def after_answer(job: Callable[[], None], lock_path: Path, action: str, seconds: float) -> bool:
    """Run `job` once the answer is out, under the lock this process holds at `lock_path`
    (others wait for it up to `seconds`). False: no such lock held, so run it now."""
    if not lock.keep(lock_path, action, seconds):
        return False
    JOBS.append(job)
    return True


def run_jobs() -> None:
    """The jobs in turn, then the locks they held are let go."""
    try:
        for job in JOBS:
            try:
                job()
            except Exception as exc:  # (the answer is given: say it where logs are read)
                print(f"onebox: finishing after the answer failed: {exc!r}", file=sys.stderr)
    finally:
        JOBS.clear()
        lock.release_kept()

"""`onebox cancel`: stop a deploy before it moves traffic, from any machine.

A deploy runs on the server, detached: Ctrl-C on the client leaves it running (that is
what makes a killed client harmless). To stop one on purpose, its run folder holds a
file `cancellable`. Cancelling renames it to `cancel`; the deploy checks for that file at
each step and, at its point of no return (just before traffic moves), renames it to
`committed`. A rename of one file can succeed only once, so exactly one side wins: a
cancelled deploy stops at its next step and undoes itself like any failed one (the
release being built is removed, the live one keeps serving), and a deploy past that
point is never cancelled halfway (`onebox rollback` goes back once it has ended).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import protocol
from .protocol import AgentError, ExitCode

if TYPE_CHECKING:  # (the launcher imports this module before it needs any request)
    from .requests import Request

CANCELLABLE, CANCEL, COMMITTED = "cancellable", "cancel", "committed"
_run_dir: Path | None = None  # the deploy's own run folder, while it may be cancelled


def open_for(run_dir: Path) -> None:
    """Called by the launcher in a deploy's unit: from now on it may be cancelled."""
    global _run_dir
    (run_dir / CANCELLABLE).touch()
    _run_dir = run_dir
    protocol.before_step.append(check)


def check() -> None:
    """At each step: stop here if someone cancelled."""
    if _run_dir is not None and (_run_dir / CANCEL).exists():
        raise AgentError(
            "the deploy was cancelled (`onebox cancel`); the live release keeps serving"
        )


def commit() -> None:
    """The point of no return: after this, cancelling is refused."""
    global _run_dir
    if _run_dir is None:
        return
    try:
        os.rename(_run_dir / CANCELLABLE, _run_dir / COMMITTED)
    except FileNotFoundError:
        check()  # cancel won the race
    _run_dir = None


def cancel(request: Request) -> dict[str, Any]:
    """Cancel the app's deploy in progress, and wait (up to 5 min) for it to stop."""
    from .launch import RUNS, unit_running

    app = request.app
    runs = sorted(RUNS.glob(f"onebox-{app}-deploy-*")) if RUNS.is_dir() else []
    found = [run_dir for run_dir in runs if unit_running(run_dir.name)]
    if not found:
        raise AgentError(f"no deploy of {app} is running", code=ExitCode.CONFIG)
    outcome = {}
    for run_dir in found:
        try:
            os.rename(run_dir / CANCELLABLE, run_dir / CANCEL)
        except FileNotFoundError:
            outcome[run_dir.name] = "too late: it has moved traffic to the new release"
            continue
        deadline = time.monotonic() + 300
        while unit_running(run_dir.name) and time.monotonic() < deadline:
            time.sleep(0.2)
        outcome[run_dir.name] = "cancelling" if unit_running(run_dir.name) else "cancelled"
    return {"runs": outcome}

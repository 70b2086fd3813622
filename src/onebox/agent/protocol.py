"""Events the agent prints (one JSON object a line) and the errors it reports."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of the agent and the client alike (scripts tell failures apart)."""

    OK = 0
    FAILED = 1  # a step on the server failed (migrate, collectstatic, health check...)
    USAGE = 2  # bad command line
    CONFIG = 3  # onebox.toml or the project is wrong
    CONNECTION = 4  # cannot reach or log into the server
    HOST_KEY = 5  # the server's host key changed or is unknown
    UNSUPPORTED = 6  # the server or this machine cannot run what was asked
    LOCKED = 7  # another deploy holds the lock


class AgentError(Exception):
    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        output: str = "",
        code: ExitCode = ExitCode.FAILED,
        command: str = "",
    ) -> None:
        super().__init__(message)
        self.message, self.hint, self.output, self.code, self.command = (
            message,
            hint,
            output,
            code,
            command,
        )


PLAIN = False  # scheduled jobs write plain lines for the journal, not JSON events


def emit(event: str, **fields: object) -> None:
    if PLAIN:
        if event == "step" and fields.get("status") != "start":
            detail = f" ({fields['detail']})" if fields.get("detail") else ""
            print(f"{fields['name']}: {fields['status']}, {fields['seconds']}s{detail}", flush=True)
        elif event == "log":
            print(fields.get("text"), flush=True)
        return
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


# Called as each step begins (a cancelled deploy stops there, see cancel.py).
before_step: list[Callable[[], None]] = []


@contextmanager
def step(name: str) -> Iterator[dict[str, object]]:
    """Report a step's start and end; the body sets state['changed'] when it changed
    something. A body that raises ends the step as "failed", so the output names it."""
    for hook in before_step:
        hook()
    state: dict[str, object] = {"changed": None}  # None: done, no idempotence to report
    started = time.monotonic()
    emit("step", name=name, status="start")
    try:
        yield state
    except BaseException as exc:
        why = exc.message if isinstance(exc, AgentError) else type(exc).__name__
        emit("step", name=name, status="failed", seconds=_since(started), detail=why)
        raise
    status = "unchanged" if state["changed"] is False else "changed"
    emit("step", name=name, status=status, seconds=_since(started), detail=state.get("detail", ""))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)

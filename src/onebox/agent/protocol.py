"""Events the agent prints (one JSON object a line) and the errors it reports."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Exit codes shared with the client (onebox.errors.ExitCode).
EXIT_FAILED = 1
EXIT_CONFIG = 3
EXIT_UNSUPPORTED = 6
EXIT_LOCKED = 7


class AgentError(Exception):
    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        output: str = "",
        code: int = EXIT_FAILED,
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
    """Report a step's start and end; the body sets state['changed'] when it changed something."""
    for hook in before_step:
        hook()
    state: dict[str, object] = {"changed": None}  # None: done, no idempotence to report
    started = time.monotonic()
    emit("step", name=name, status="start")
    yield state
    status = "unchanged" if state["changed"] is False else "changed"
    emit(
        "step",
        name=name,
        status=status,
        seconds=round(time.monotonic() - started, 2),
        detail=state.get("detail", ""),
    )

"""The deploy lock: one deploy (or rollback, or restore) at a time per app."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .protocol import AgentError, ExitCode


@contextmanager
def deploy_lock(path: Path, holder: str, action: str, wait: float = 0) -> Iterator[None]:
    """flock-based: the kernel drops it when the holding process dies, so it never goes stale.

    `wait`: seconds to wait for the holder to finish before giving up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AgentError(
                        f"another operation is running: {_describe(fd)}",
                        hint="wait for it to finish, then try again",
                        code=ExitCode.LOCKED,
                    ) from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {
                    "holder": holder,
                    "action": action,
                    "pid": os.getpid(),
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            ).encode(),
        )
        yield
    finally:
        os.close(fd)


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return "unknown holder"
    return f"{info.get('action', '?')} by {info.get('holder', '?')} since {info.get('since', '?')}"

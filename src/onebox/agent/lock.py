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

HELD: dict[Path, int] = {}  # the locks this process holds: their files' descriptors
KEEP: set[Path] = set()  # held past their `with` block, for work after the answer
KEPT: list[int] = []  # (those descriptors, once their block ended)


@contextmanager
def deploy_lock(path: Path, holder: str, action: str, wait: float = 0) -> Iterator[None]:
    """flock-based: the kernel drops it when the holding process dies, so it never goes stale.

    `wait`: seconds to wait for the holder to finish before giving up. A holder that
    finishes a deploy's last step after the client got its answer (`hand_over`) is
    waited for in any case, up to the time it gave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline and not _finishing(fd):
                    raise AgentError(
                        f"another operation is running: {_describe(fd)}",
                        hint="wait for it to finish, then try again",
                        code=ExitCode.LOCKED,
                    ) from None
                time.sleep(0.1)
        _describe_holder(fd, {"holder": holder, "action": action})
        HELD[path] = fd
        yield
    finally:
        HELD.pop(path, None)
        if path in KEEP:
            KEEP.discard(path)
            KEPT.append(fd)
        else:
            os.close(fd)


def keep(path: Path, action: str, seconds: float) -> bool:
    """Hold the lock at `path` past its block, until `release_kept` (later.py): the work
    after the answer; others wait for it up to `seconds`. False: it is not held here."""
    fd = HELD.get(path)
    if fd is None:
        return False
    _describe_holder(fd, {"holder": "onebox", "action": action, "until": time.time() + seconds})
    KEEP.add(path)
    return True


def release_kept() -> None:
    while KEPT:
        os.close(KEPT.pop())


def _describe_holder(fd: int, info: dict[str, object]) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({**info, "pid": os.getpid(), "since": since}).encode(), 0)


def _finishing(fd: int) -> bool:
    """The holder is the last step of a deploy that has answered, and has time left."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return False
    return isinstance(info.get("until"), float) and time.time() < info["until"]


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return "unknown holder"
    return f"{info.get('action', '?')} by {info.get('holder', '?')} since {info.get('since', '?')}"

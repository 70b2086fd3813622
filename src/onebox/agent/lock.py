"""The deploy lock: one deploy (or rollback, or restore) at a time per app; and the roll
lock, which a rolling deploy or rollback holds on each web host from its start to its end
(across its many calls), so that nothing else deploys to any of them in between."""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
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


@contextmanager
def roll_guard(path: Path, roll: str) -> Iterator[None]:
    """A deploy, rollback or restore runs while no rolling one holds the roll lock, or
    as part of the one that does (`roll`: its token). Held shared meanwhile: a roll
    cannot begin in the middle of it either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if not roll or _info(fd).get("token") != roll:
                raise AgentError(
                    f"a rolling operation holds every web host: {_describe(fd)}",
                    hint="wait for it to finish, then try again",
                    code=ExitCode.LOCKED,
                ) from None
        yield
    finally:
        os.close(fd)


def _info(fd: int) -> dict:
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


TOKEN = re.compile(r"[0-9a-f]{16,64}")
HOLDER = re.compile(r"[A-Za-z0-9_.@+-]{1,100}")
ROLL_ACTIONS = ("deploy", "rollback")


def hold_roll(path: Path, token: str, holder: str, action: str) -> int:
    """`onebox-agent roll-lock APP TOKEN HOLDER ACTION` (commands.py): take the roll lock,
    say "locked", and keep it until the client closes our standard input (its end, or
    its SSH session's: the kernel drops the lock with this process, so it never goes
    stale)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"busy: {_describe(fd)}", flush=True)
        return 1
    _describe_holder(fd, {"holder": holder, "action": f"rolling {action}", "token": token})
    print("locked", flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":  # (run by commands.py's roll-lock, arguments checked there)
    sys.exit(hold_roll(Path(sys.argv[1]), *sys.argv[2:5]))

"""Run one action of the server-side agent: one tar stream in, JSON-line events out."""

from __future__ import annotations

import io
import json
import secrets
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onebox.agent.requests import Request
from onebox.bundle import deployer
from onebox.errors import (
    ConfigError,
    ExitCode,
    LockedError,
    OneboxError,
    RemoteStepFailed,
    UnsupportedError,
)
from onebox.transport import DEPLOY_USER, SSH

AGENT_DIR = Path(__file__).parent / "agent"

# What root (or a sudo-capable user, before setup made the deploy user) runs: the same
# file as the installed /usr/local/sbin/onebox-agent, which the deploy user runs instead.
# It unpacks the stream into a private temp dir, writes the operation's start into the
# history, and hands it to the agent's launcher (see agent/entry_script.py, launch.py).
ENTRY_SOURCE = (AGENT_DIR / "entry_script.py").read_text()

Event = dict[str, object]


def pack(
    request: Request, payload: Path | None = None, payload_files: list[Path] | None = None
) -> bytes:
    """The tar stream: the agent's code, the request, and the release's files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(AGENT_DIR.glob("*.py")):
            tar.add(path, arcname=f"onebox_agent/{path.name}")
        # "by": for the server's history; "run": this call's own token, which the result
        # must carry (a result left by another run is never taken for this one's)
        data = {**request.to_json(), "by": request.by or deployer(), "run": secrets.token_hex(8)}
        _add_bytes(tar, "request.json", json.dumps(data).encode(), mode=0o600)
        if payload is not None:
            for path in payload_files or []:
                tar.add(
                    payload / path, arcname=f"payload/{path}", recursive=False, filter=_normalise
                )
    return buffer.getvalue()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def call(ssh: SSH, stream: bytes, on_event: Callable[[Event], None]) -> dict[str, Any]:
    """Send the stream to the agent, hand each event to on_event, return the result."""
    run = _run_token(stream)
    ssh.connect()
    if ssh.login_user == DEPLOY_USER:  # its sudo allows onebox-agent only
        python = ssh.agent_command([])
    else:  # root or a sudo-capable user, before or after setup
        python = ssh.sudo(["python3", "-I", "-c", ENTRY_SOURCE])
    process = ssh.popen(
        python, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    writer = threading.Thread(target=_feed, args=(process, stream), daemon=True)
    writer.start()
    result: dict[str, object] | None = None
    error: Event | None = None
    assert process.stdout is not None and process.stderr is not None
    for raw in process.stdout:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if event.get("event") == "result":
            if event.get("run") != run:
                raise RemoteStepFailed(
                    f"{ssh.target.name} answered with the result of another run",
                    host=ssh.target.name,
                    hint="nothing of this run was confirmed: check `onebox status` and "
                    "`onebox history`, then try again",
                )
            result = event.get("data") or {}
        elif event.get("event") == "error":
            error = event
        else:
            on_event(event)
    stderr = process.stderr.read().decode(errors="replace")
    code = process.wait()
    writer.join(timeout=5)
    if code == 255 and error is None:
        raise ssh.connection_error(stderr)
    if error is not None:
        raise _agent_error(ssh, error, code)
    if code != 0 or result is None:
        raise RemoteStepFailed(
            f"the onebox agent failed on {ssh.target.name} (exit {code})",
            host=ssh.target.name,
            output=stderr.strip()[-2000:],
            command=shlex.join(python[:2]),
            hint=_stderr_hint(stderr),
        )
    return result


def _run_token(stream: bytes) -> str:
    """The run token pack() put in the request (read back: the stream is all call gets)."""
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r|") as tar:
        for member in tar:  # request.json comes right after the agent's code
            if member.name == "request.json":
                handle = tar.extractfile(member)
                return str(json.load(handle)["run"]) if handle else ""
    return ""


def _feed(process: subprocess.Popen[bytes], stream: bytes) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write(stream)
        process.stdin.close()
    except BrokenPipeError:
        pass


def _agent_error(ssh: SSH, event: Event, code: int) -> Exception:
    kinds: dict[int, type[OneboxError]] = {
        ExitCode.CONFIG: ConfigError,
        ExitCode.UNSUPPORTED: UnsupportedError,
        ExitCode.LOCKED: LockedError,
    }
    kind = kinds.get(code, RemoteStepFailed)
    return kind(
        str(event.get("message")),
        host=ssh.target.name,
        hint=str(event.get("hint") or "") or None,
        output=str(event.get("output") or "") or None,
        command=str(event.get("command") or "") or None,
    )


def _stderr_hint(stderr: str) -> str:
    if "sudo" in stderr and ("password" in stderr or "not in the sudoers" in stderr):
        return "the SSH user needs passwordless sudo (or log in as root)"
    if "python3" in stderr and "not found" in stderr:
        return "the server has no python3: is it Debian 12 or 13?"
    return "run with --verbose for details, or check the server's journal"

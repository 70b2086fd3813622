"""Run an action so that the client may vanish: in a transient systemd unit of its own.

Actions that change the server (setup, deploy, rollback, restore, backup, verify) do not
run in the SSH session. The launcher starts the agent with `systemd-run`, then only
relays its events (written to a file) to the client. If the client is killed or the
connection drops, the launcher dies and the unit carries on to the end: a deploy is
never left half-applied by the client. The next operation waits on the same locks.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import cancel, later
from .paths import RUNS
from .protocol import ExitCode, emit

DETACHED = {"setup", "deploy", "rollback", "restore", "backup", "verify"}
EXIT_FILE = "exit-code"
# systemd answers nothing while it re-executes itself (an upgrade of systemd, or setup
# after a libc update does that): a unit is gone only when it stays gone this long.
GONE_FOR = 5.0
POLL, ASK_SYSTEMD = 0.01, 0.5


def launch(workdir: str) -> int:
    """Called by the bootstrap with the unpacked stream; returns the action's exit code."""
    root = Path(workdir)
    request = json.loads((root / "request.json").read_text())
    if request.get("action") not in DETACHED or os.geteuid() != 0:
        from .main import main  # (here: a detached action needs it in its unit only)

        return main(workdir)
    clean_old_runs()
    # Who logged in: the detached unit no longer has sudo's environment to tell.
    request["login"] = request.get("login") or os.environ.get("SUDO_USER") or "root"
    (root / "request.json").write_text(json.dumps(request))
    RUNS.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A name no earlier run had: PIDs start low again after a reboot, and a folder of the
    # same name (kept for a day) would hand this client that run's events and result.
    run_dir = RUNS / f"onebox-{request.get('app', 'x')}-{request['action']}-{secrets.token_hex(6)}"
    if run_dir.exists():  # never moved into an old one: its result would be this one's
        emit("error", message=f"run folder {run_dir} exists already; try again")
        return ExitCode.FAILED
    agent = agent_path(root, run_dir)
    try:
        shutil.move(str(root), run_dir)  # out of the bootstrap's temp dir, removed when it exits
    except OSError as exc:  # a full disk, most likely: said plainly, nothing else started
        from .main import DISK_FULL, disk_full

        shutil.rmtree(run_dir, ignore_errors=True)
        error = DISK_FULL if disk_full(exc) else None
        emit(
            "error",
            message=error.message if error else f"could not unpack the request: {exc}",
            hint=error.hint if error else "",
        )
        return ExitCode.FAILED
    events = run_dir / "events.jsonl"
    events.touch(mode=0o600)
    unit = run_dir.name
    started = subprocess.run(
        [
            "systemd-run",
            "--quiet",
            "--collect",
            f"--unit={unit}",
            "--description=onebox " + request["action"],
            f"--property=StandardOutput=append:{events}",
            f"--property=StandardError=append:{run_dir / 'stderr'}",
            f"--setenv=PYTHONPATH={agent}",
            "--property=KillMode=mixed",
            "/usr/bin/python3",
            "-m",
            "onebox_agent.launch",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        emit("error", message="could not start the onebox agent", output=started.stderr)
        return ExitCode.FAILED
    return follow(run_dir, unit)


def agent_path(workdir: Path, run_dir: Path) -> Path:
    """Where the detached unit imports this agent from: the compiled copy the entry ran
    it from (entry_script.compiled_agent), else the sources that came in the stream (in
    workdir, moved to run_dir)."""
    imported_from = Path(__file__).resolve().parent.parent
    return run_dir if imported_from == workdir.resolve() else imported_from


def follow(run_dir: Path, unit: str) -> int:
    """Relay the unit's events until it has finished; its exit code is ours.

    The files are looked at every POLL seconds (the answer waits for the next look), the
    unit itself (a systemctl call) only every ASK_SYSTEMD: it matters only if the unit
    died without its exit code."""
    events = run_dir / "events.jsonl"
    gone_since: float | None = None
    asked = 0.0
    with events.open() as handle:
        while True:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
                continue
            code = run_dir / EXIT_FILE
            if code.is_file() and code.stat().st_size:  # (an older agent wrote it in place)
                rest = handle.read()
                sys.stdout.write(rest)
                sys.stdout.flush()
                value = int(code.read_text() or ExitCode.FAILED)
                shutil.rmtree(run_dir, ignore_errors=True)
                return value
            time.sleep(POLL)
            if time.monotonic() - asked < ASK_SYSTEMD:
                continue
            asked = time.monotonic()
            if unit_running(unit):
                gone_since = None
            elif gone_since is None:
                gone_since = asked
            elif asked - gone_since > GONE_FOR:
                stderr = (run_dir / "stderr").read_text(errors="replace")[-2000:]
                emit("error", message="the onebox agent stopped unexpectedly", output=stderr)
                return ExitCode.FAILED


def unit_running(unit: str) -> bool:
    state = subprocess.run(
        ["systemctl", "is-active", f"{unit}.service"], capture_output=True, text=True
    ).stdout.strip()
    return state in ("active", "activating", "deactivating")


def clean_old_runs(age: float = 86400) -> None:
    """Run folders whose client never came back for them (their unit finished long ago)."""
    if not RUNS.is_dir():
        return
    for folder in RUNS.iterdir():
        try:
            old = time.time() - folder.stat().st_mtime > age
        except OSError:
            continue
        if old and not unit_running(folder.name):
            shutil.rmtree(folder, ignore_errors=True)


def detached(run_dir: str) -> int:
    """Inside the transient unit: run the action, then leave the exit code for the relay."""
    if json.loads((Path(run_dir) / "request.json").read_text()).get("action") == "deploy":
        cancel.open_for(Path(run_dir))
    from .main import main

    code = main(run_dir)
    # Written whole, then renamed: the relay reads the file as soon as it exists, and an
    # empty one (caught between open and write) read as exit 1, whatever the action said.
    tmp = Path(run_dir) / f".{EXIT_FILE}"
    tmp.write_text(str(code))
    tmp.rename(Path(run_dir) / EXIT_FILE)
    later.run_jobs()  # the client has its answer (the relay removes run_dir meanwhile)
    return code


if __name__ == "__main__":
    sys.exit(detached(sys.argv[1]))

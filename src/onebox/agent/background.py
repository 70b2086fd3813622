"""Processes ([processes]) and scheduled commands ([schedule]): the app beyond its web slots.

Each release carries its background (`.onebox/background.json`, a script per command,
the units that run them). One link, `slots/background`, names the release they run.
Moving them onto a release (after a deploy's web switch passed its probation, and at a
rollback) stops the old processes first, gracefully, then installs the release's units,
re-points the link and starts the new ones, which must stay up for a probation of their
own. Stop before start: a scheduler (celery beat) never runs twice, even briefly; a
worker's queue just waits those seconds. Removed processes and schedules lose their units.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .django import hint_for
from .paths import UNIT_DIR, AppPaths
from .protocol import AgentError, ExitCode, emit, step
from .system import ensure_dir, ensure_symlink, run, unit_journal, write_file

SPEC = ".onebox/background.json"
MIN_PROBATION = 2.0  # seconds: a process that dies at once is always caught
SEARCH_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


def spec(release: Path | None) -> dict:
    """What a release runs in the background: {"processes": {...}, "schedules": {...}}."""
    path = release / SPEC if release else None
    if path is None or not path.is_file():
        return {"processes": {}, "schedules": {}, "units": []}
    return json.loads(path.read_text())


def write_release(release: Path, app: str, background: dict, workdir: str) -> None:
    """Into a frozen release (root's, read-only to the app): the scripts that run each
    command, the units, and the spec. Checked first: every command must exist."""
    check_commands(release, background, workdir)
    public = release / ".onebox"
    for kind in ("processes", "schedules"):
        folder = public / kind
        if folder.is_symlink() or folder.exists():
            raise AgentError(f"the release ships {folder.relative_to(release)}, onebox's own")
        for name, entry in background.get(kind, {}).items():
            script = "#!/bin/sh\n# written by onebox from onebox.toml\nexec " + shlex.join(
                entry["argv"]
            )
            write_file(folder / name, script + "\n", mode=0o750, group=app)
    for name, text in background.get("units", {}).items():
        write_file(public / "units" / name, text, mode=0o640, group=app)
    saved = {**{k: background.get(k, {}) for k in ("processes", "schedules")}}
    saved["units"] = sorted(background.get("units", {}))
    write_file(release / SPEC, json.dumps(saved, indent=2), mode=0o640, group=app)


def check_commands(release: Path, background: dict, workdir: str) -> None:
    """A command that is not in the release's virtualenv nor on the server is refused
    before anything changes (not found as a crash loop after the switch)."""
    bin_dir = release / ".venv" / "bin"
    for kind, where in (("processes", "[processes]"), ("schedules", "[schedule]")):
        for name, entry in background.get(kind, {}).items():
            program = entry["argv"][0]
            if "/" in program:
                found = (release / workdir / program).exists() or Path(program).exists()
            else:
                found = any(
                    os.access(Path(folder) / program, os.X_OK) for folder in (bin_dir, *SEARCH_PATH)
                )
            if not found:
                raise AgentError(
                    f"{where} {name}: `{program}` is not in the release's virtualenv nor on "
                    "the server; nothing was changed",
                    hint=f"add the package that provides {program} to your dependencies, "
                    f"or fix the command of {where} {name} in onebox.toml",
                    code=ExitCode.CONFIG,
                )


def installed(paths: AppPaths) -> dict:
    if paths.background_state.is_file():
        return json.loads(paths.background_state.read_text())
    return {"processes": {}, "schedules": {}, "units": []}


def process_units(paths: AppPaths, processes: dict) -> list[str]:
    return [
        paths.process_unit(name, replica)
        for name, entry in processes.items()
        for replica in range(1, int(entry["replicas"]) + 1)
    ]


def current_release(paths: AppPaths) -> Path | None:
    link = paths.background
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


def move(paths: AppPaths, release: Path, probation: float) -> dict[str, Any]:
    """Put the processes and schedules on `release`; raises (the new ones stopped) when
    a process does not stay up. The caller puts the previous release back."""
    old, new = installed(paths), spec(release)
    if not (old["processes"] or old["schedules"] or new["processes"] or new["schedules"]):
        ensure_symlink(paths.background, release)
        return {}
    # (setup makes it; a server set up by an older onebox has none yet)
    ensure_dir(paths.state, mode=0o700, owner=paths.app, group=paths.app)
    killed = stop_processes(paths, old["processes"])
    with step("background units") as state:
        state["changed"] = install_units(paths, release, old, new)
        ensure_symlink(paths.background, release)
    units = process_units(paths, new["processes"])
    if units:
        with step(f"start processes ({', '.join(new['processes'])})"):
            run(["systemctl", "enable", "--quiet", *units], check=False)
            run(["systemctl", "start", "--no-block", *units], what="starting the processes")
        seconds = max(probation, MIN_PROBATION)
        with step(f"process probation ({seconds:g}s)"):
            problem = watch(paths, units, seconds)
            if problem:
                unit, why = problem
                output = unit_journal(unit)
                stop_processes(paths, new["processes"], quiet=True)
                name = unit_label(paths, unit)
                known = hint_for(output)
                raise AgentError(
                    f"the process {name} {why} in release {release.name}",
                    output=output,
                    hint=(known if not known.startswith("the output above") else
                          "fix the process's command or code (its log is above)")
                    + f"; then deploy again (`onebox logs --process {name.split('@')[0]}` "
                    "shows more)",
                )  # fmt: skip
    return {"processes": list(new["processes"]), "killed": killed}


def stop_processes(paths: AppPaths, processes: dict, quiet: bool = False) -> list[str]:
    """Stop them all at once, each given its stop signal and timeout; name those that
    had to be killed."""
    units = process_units(paths, processes)
    running = [u for u in units if is_active(u)]
    if not running:
        return []
    longest = max(int(e.get("stop_timeout", 30)) for e in processes.values())
    with step("stop processes") if not quiet else nullcontext():
        run(["systemctl", "stop", *running], check=False, timeout=longest + 60)
    killed = [u for u in running if unit_property(u, "Result") == "timeout"]
    for unit in killed:
        emit(
            "log",
            text=f"warning: the process {unit_label(paths, unit)} did not stop within its "
            "stop_timeout after its stop signal and was killed (its work in progress may be "
            "lost: raise stop_timeout, or make it stop on SIGTERM)",
        )
    return [unit_label(paths, u) for u in killed]


def install_units(paths: AppPaths, release: Path, old: dict, new: dict) -> bool:
    """The release's unit files in /etc/systemd/system; those of removed processes and
    schedules stopped, disabled and deleted. Timers enabled for the new schedules."""
    changed = False
    gone_processes = {k: v for k, v in old["processes"].items() if k not in new["processes"]}
    # replicas taken away (3 -> 1): their instances go too
    for name, entry in new["processes"].items():
        before = old["processes"].get(name)
        if before and int(before["replicas"]) > int(entry["replicas"]):
            extra = {name: {"replicas": before["replicas"]}}
            for unit in process_units(paths, extra)[int(entry["replicas"]) :]:
                run(["systemctl", "disable", "--now", "--quiet", unit], check=False)
    for unit in process_units(paths, gone_processes):
        run(["systemctl", "disable", "--now", "--quiet", unit], check=False)
    for name in old["schedules"]:
        if name not in new["schedules"]:
            timer = paths.schedule_unit(name, "timer")
            run(["systemctl", "disable", "--now", "--quiet", timer], check=False)
    for name in set(old.get("units", [])) - set(new.get("units", [])):
        (UNIT_DIR / name).unlink(missing_ok=True)
        changed = True
    for name in new.get("units", []):
        changed |= write_file(UNIT_DIR / name, (release / ".onebox" / "units" / name).read_text())
    if changed:
        run(["systemctl", "daemon-reload"])
    state = {**{k: new[k] for k in ("processes", "schedules", "units")}, "release": release.name}
    write_file(paths.background_state, json.dumps(state, indent=2), mode=0o600)
    timers = [paths.schedule_unit(name, "timer") for name in new["schedules"]]
    if timers:
        run(["systemctl", "enable", "--quiet", *timers], check=False)
        # restart: a changed calendar takes effect now, not at the next boot
        run(["systemctl", "restart", *timers], what="starting the schedule timers")
    return changed


def watch(paths: AppPaths, units: list[str], seconds: float) -> tuple[str, str] | None:
    """(unit, what went wrong) for the first process that died during the probation."""
    deadline = time.monotonic() + seconds
    while True:
        for unit in units:
            problem = trouble(unit)
            if problem:
                return unit, problem
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.25)


def trouble(unit: str) -> str | None:
    values = unit_properties(unit, "ActiveState", "SubState", "NRestarts", "ExecMainStatus")
    restarts = int(values.get("NRestarts") or 0)
    if values.get("SubState") == "auto-restart" or restarts > 0:
        status = values.get("ExecMainStatus", "?")
        if status == "0":
            return "exited right after it started (a process must keep running: a command " \
                "that finishes belongs in [schedule])"  # fmt: skip
        return f"crashed right after it started (exit status {status})"
    if values.get("ActiveState") in ("failed", "inactive"):
        return "did not start"
    return None


def stop_all(paths: AppPaths) -> None:
    """No background at all (the first release's processes failed, and none ran before)."""
    old = installed(paths)
    stop_processes(paths, old["processes"], quiet=True)
    install_units(paths, paths.background, old, {"processes": {}, "schedules": {}, "units": []})
    paths.background_state.unlink(missing_ok=True)


def is_active(unit: str) -> bool:
    state = run(["systemctl", "is-active", unit], check=False).stdout.strip()
    return state in ("active", "activating", "deactivating", "reloading")


def unit_properties(unit: str, *names: str) -> dict[str, str]:
    out = run(["systemctl", "show", unit, "--property=" + ",".join(names)], check=False).stdout
    return dict(line.partition("=")[::2] for line in out.splitlines())


def unit_property(unit: str, name: str) -> str:
    return unit_properties(unit, name).get(name, "")


def unit_label(paths: AppPaths, unit: str) -> str:
    """onebox-shop-worker@2.service -> worker@2"""
    return unit.removeprefix(f"onebox-{paths.app}-").removesuffix(".service")


def log_units(paths: AppPaths, name: str | None = None) -> list[str]:
    """The journal units of the background (all, or the process or schedule `name`)."""
    state = installed(paths)
    names = [*state["processes"], *state["schedules"]]
    if name is not None:
        names = [n for n in names if n == name]
    return [
        f"onebox-{paths.app}-{n}@*" if n in state["processes"] else paths.schedule_unit(n)
        for n in names
    ]


def status(paths: AppPaths) -> dict[str, Any]:
    """Every process instance (release, state, restarts, since) and every schedule (last
    run, result, next run)."""
    state = installed(paths)
    processes = []
    for unit in process_units(paths, state["processes"]):
        values = unit_properties(unit, "ActiveState", "SubState", "NRestarts",
                                 "ActiveEnterTimestamp")  # fmt: skip
        processes.append(
            {
                "name": unit_label(paths, unit),
                "state": values.get("ActiveState", ""),
                "restarts": int(values.get("NRestarts") or 0),
                "since": values.get("ActiveEnterTimestamp", ""),
                "release": state.get("release"),
            }
        )
    schedules = []
    for name in state["schedules"]:
        service = unit_properties(
            paths.schedule_unit(name),
            "Result", "ExecMainStatus", "ExecMainStartTimestamp", "ActiveState",
        )  # fmt: skip
        timer = unit_properties(
            paths.schedule_unit(name, "timer"), "NextElapseUSecRealtime", "LastTriggerUSec"
        )
        ran = service.get("ExecMainStartTimestamp", "")
        schedules.append(
            {
                "name": name,
                "calendar": state["schedules"][name].get("calendar", ""),
                "last_run": ran,
                "result": "" if not ran else _result(service),
                "next": timer.get("NextElapseUSecRealtime", ""),
            }
        )
    return {"processes": processes, "schedules": schedules}


def _result(values: dict[str, str]) -> str:
    if values.get("ActiveState") in ("activating", "active"):
        return "running"
    if values.get("Result") == "success":
        return "ok"
    if values.get("Result") == "exit-code":
        return f"failed (exit status {values.get('ExecMainStatus')})"
    return f"failed ({values.get('Result')})"  # timeout, signal, oom-kill...


def problems(state: dict) -> list[str]:
    """From status(): the processes that do not run."""
    found = []
    for process in state["processes"]:
        if process["state"] != "active":
            found.append(f"the process {process['name']} is {process['state']}")
    return found

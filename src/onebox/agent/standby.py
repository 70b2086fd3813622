"""The warm standby: after a deploy, the previous release stays running on its slot.

`onebox rollback` to it is then a health check and a switch of live.sock: nothing
starts. The standby costs its processes' memory, so onebox keeps one only where the
server has room for it ([deploy] standby = "auto": what stays free with both releases
running), and says so either way (`onebox deploy`, `onebox status`).

The standby is never started at boot (its unit is disabled); a deploy's new release
takes its slot (start_slot stops it first). Nothing is recorded of it but the reason
the last deploy kept none: what runs on the idle slot is read from systemd.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .paths import SLOTS, AppPaths
from .sizing import CGROUP_LIMIT, memory_mib
from .system import run, write_file

RESERVE_MIB = 200  # left free with both releases running, or no standby is kept
CGROUP = Path("/sys/fs/cgroup")


def available_mib(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = CGROUP) -> int:
    """Memory the server can still give: MemAvailable, or what a container's limit leaves
    (its page cache counted as free, as MemAvailable counts it)."""
    values = {}
    for line in meminfo.read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) // 1024 if rest.split() else 0
    available = values.get("MemAvailable", 0)
    try:
        limit = (cgroup / CGROUP_LIMIT.name).read_text().strip()
        current = int((cgroup / "memory.current").read_text()) >> 20
        stat = (cgroup / "memory.stat").read_text().split()
    except OSError:
        return available
    if not limit.isdigit():
        return available
    cache = dict(zip(stat[::2], stat[1::2], strict=False)).get("inactive_file", "0")
    return min(available, (int(limit) >> 20) - current + (int(cache) >> 20))


def unit_mib(unit: str) -> int:
    """The memory a running unit's processes use: their PSS summed (shared pages split
    between them), read from /proc (a cgroup v1 host keeps no figure per unit)."""
    total = 0
    for pid in unit_pids(unit):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # (gone meanwhile)
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total // 1024


def unit_pids(unit: str) -> list[int]:
    """The processes of a unit, from its cgroup in whichever hierarchy the system has."""
    out = run(["systemctl", "show", unit, "--property=ControlGroup", "--value"], check=False)
    group = out.stdout.strip()
    if not group:
        return []
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/systemd"):
        procs = Path(base + group) / "cgroup.procs"
        if procs.is_file():
            return [int(pid) for pid in procs.read_text().split()]
    return []


def decide(paths: AppPaths, wanted: bool | str, slot: str, asgi: bool = False) -> tuple[bool, str]:
    """Whether the release on `slot` (no longer live) stays up as the standby, and why."""
    if wanted is False:
        return False, "[deploy] standby = false"
    if asgi:  # (the old slot's stop is what sends websockets over: close code 1012)
        return False, (
            "the app is served as ASGI: its websockets move to the new release only once "
            "the old one stops"
        )
    free, total, cost = available_mib(), memory_mib(), unit_mib(paths.unit(slot))
    if wanted == "auto" and free < RESERVE_MIB:
        return False, (
            f"the server is too small: {free} MiB of {total} MiB would stay free with it "
            f"running ({cost} MiB), under the {RESERVE_MIB} MiB onebox leaves"
        )
    return True, f"{cost} MiB; {free} MiB of {total} MiB free"


def record(paths: AppPaths, kept: bool, why: str) -> None:
    write_file(paths.run / "standby.json", json.dumps({"kept": kept, "why": why}) + "\n")


def status(paths: AppPaths, live: str | None, memory: bool = True) -> dict[str, Any]:
    """{"slot", "release", "memory_mib"} of the standby running, or {"why": ...} none is.
    memory=False: without "memory_mib" (reading it costs a rollback 30 ms)."""

    for slot in SLOTS:
        if slot == live or not running(paths, slot):
            continue
        release = paths.slot_link(slot).resolve()
        found = {"slot": slot, "release": release.name}
        return {**found, "memory_mib": unit_mib(paths.unit(slot))} if memory else found
    try:
        last = json.loads((paths.run / "standby.json").read_text())
    except (OSError, ValueError):
        return {"why": "none since the server started" if live else ""}
    if last.get("kept"):
        return {"why": "the previous release stopped since the last deploy"}
    return {"why": last.get("why", "")}


def running(paths: AppPaths, slot: str) -> bool:
    active = run(["systemctl", "is-active", paths.unit(slot)], check=False).stdout.strip()
    return active == "active" and paths.slot_link(slot).is_symlink()


def serves(paths: AppPaths, slot: str, release: Path) -> bool:
    """The standby on `slot` runs `release`: a rollback to it starts nothing."""
    link = paths.slot_link(slot)
    return running(paths, slot) and link.resolve() == release.resolve()

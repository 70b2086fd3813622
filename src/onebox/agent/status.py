"""`onebox status`: what the server runs, read from the server itself."""

from __future__ import annotations

import json
from typing import Any

from . import background, guard, site_check, sizing, standby, updates
from .backup import read_state
from .paths import SLOTS, AppPaths
from .provision import facts
from .requests import StatusRequest
from .switch import http_status, live_slot
from .system import read_env_file, run


def status(request: StatusRequest) -> dict[str, Any]:
    paths = AppPaths(request.app)
    result: dict[str, Any] = {"server": facts(), "set_up": paths.unit_template.is_file()}
    slot = live_slot(paths)
    result["live_slot"] = slot
    if paths.current.is_symlink():
        manifest = paths.current.resolve() / ".onebox" / "manifest.json"
        result["release"] = json.loads(manifest.read_text()) if manifest.is_file() else None
    result["serving"] = serving(paths)
    result["standby"] = standby.status(paths, slot)
    result["units"] = {
        name: run(["systemctl", "is-active", paths.unit(name)], check=False).stdout.strip()
        for name in SLOTS
    }
    unit = site_check.proxy_unit(paths)
    result["proxy"] = site_check.proxy_name(paths)
    result["caddy"] = run(["systemctl", "is-active", unit], check=False).stdout.strip()
    if slot and paths.live_socket.exists():
        try:
            result["health"] = http_status(paths.live_socket, request.address, request.health_path)
        except OSError as exc:
            result["health"] = str(exc)
    problems = site_check.problems(paths, request.address, request.health_path, slot)
    guards = {name: guard.fires_at(name) for name in guard.armed()}
    if guards:
        problems.append(
            f"setup's changes to {', '.join(guards)} are not confirmed and will be undone: "
            "run `onebox setup` again"
        )
    result["background"] = background.status(paths)
    problems += background.problems(result["background"])
    result["problems"], result["guards"] = problems, guards
    result["backups"] = backup_status(paths)
    result["updates"] = updates.state()
    result["releases"] = (
        sorted(p.name for p in paths.releases.iterdir()) if paths.releases.is_dir() else []
    )
    return result


def serving(paths: AppPaths) -> dict[str, Any]:
    """The live release's gunicorn workers and threads, and what they were sized from."""
    live = paths.current / ".onebox" / "release.env"
    found = sizing.of_release(read_env_file(live)) if live.is_file() else None
    return {**(found or {}), "cores": sizing.cores(), "memory_mib": sizing.memory_mib()}


def backup_status(paths: AppPaths) -> dict[str, Any]:
    """The last backup and verification (failed ones too), and when the timers fire next."""
    state = read_state(paths)
    for job in ("backup", "verify"):
        show = run(
            [
                "systemctl",
                "show",
                f"onebox-{paths.app}-{job}.timer",
                "--property=NextElapseUSecRealtime,ActiveState",
            ],
            check=False,
        ).stdout
        values = dict(line.partition("=")[::2] for line in show.splitlines())
        state[f"{job}_timer"] = {
            "active": values.get("ActiveState") == "active",
            "next": values.get("NextElapseUSecRealtime", ""),
        }
        unit = f"onebox-{paths.app}-{job}.service"
        failed = run(["systemctl", "is-failed", unit], check=False).stdout.strip() == "failed"
        state[f"{job}_unit_failed"] = failed
    return state

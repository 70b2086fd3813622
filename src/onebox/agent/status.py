"""`onebox status`: what the server runs, read from the server itself."""

from __future__ import annotations

import json

from .paths import SLOTS, AppPaths
from .provision import facts
from .switch import http_status, live_slot
from .system import run


def status(request: dict) -> dict[str, object]:
    paths = AppPaths(request["app"])
    result: dict[str, object] = {"server": facts(), "set_up": paths.unit_template.is_file()}
    slot = live_slot(paths)
    result["live_slot"] = slot
    if paths.current.is_symlink():
        manifest = paths.current.resolve() / ".onebox" / "manifest.json"
        result["release"] = json.loads(manifest.read_text()) if manifest.is_file() else None
    result["units"] = {
        name: run(["systemctl", "is-active", paths.unit(name)], check=False).stdout.strip()
        for name in SLOTS
    }
    result["caddy"] = run(["systemctl", "is-active", "caddy"], check=False).stdout.strip()
    if slot and paths.live_socket.exists():
        try:
            result["health"] = http_status(
                paths.live_socket, request["address"], request["health_path"]
            )
        except OSError as exc:
            result["health"] = str(exc)
    result["releases"] = (
        sorted(p.name for p in paths.releases.iterdir()) if paths.releases.is_dir() else []
    )
    return result

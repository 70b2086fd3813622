"""`onebox releases` and `onebox rollback`: the kept releases, and going back to one.

A rollback is a switch like a deploy's (start the release in the idle slot, health check,
its Caddy site, move traffic, stop the old slot) without building anything: the release's
directory and virtualenv are still there. Before it, onebox asks the database which
applied migrations the older code does not know: those stand in the way.
"""

from __future__ import annotations

import json
from pathlib import Path

from .django import Release
from .lock import deploy_lock
from .paths import AppPaths
from .protocol import EXIT_CONFIG, AgentError, step
from .release import COMPLETE, switch
from .switch import live_slot
from .system import read_env_file


def kept(paths: AppPaths) -> list[Path]:
    if not paths.releases.is_dir():
        return []
    return sorted(p for p in paths.releases.iterdir() if (p / COMPLETE).is_file())


def live_release(paths: AppPaths) -> str | None:
    return paths.current.resolve().name if paths.current.is_symlink() else None


def manifest(release: Path) -> dict:
    path = release / ".onebox" / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"release_id": release.name}


def list_releases(request: dict) -> dict[str, object]:
    paths = AppPaths(request["app"])
    live = live_release(paths)
    releases = [{**manifest(p), "live": p.name == live} for p in kept(paths)]
    return {"releases": releases, "live": live, "slot": live_slot(paths)}


def rollback(request: dict, payload: Path) -> dict[str, object]:
    paths = AppPaths(request["app"])
    if not paths.unit_template.is_file():
        raise AgentError(
            f"{paths.app} is not set up on this server", hint="run `onebox setup`", code=3
        )
    with deploy_lock(paths.lock, request["deployer"], "rollback"):
        return _rollback(request, paths)


def _rollback(request: dict, paths: AppPaths) -> dict[str, object]:
    live = live_release(paths)
    target = choose(paths, live, request.get("release"))
    release = Release(paths.app, target, release_env(paths, target), request["manage"])
    with step("schema check") as state:
        newer = release.migrations()["newer"]
        state["detail"] = f"{len(newer)} migration(s) newer than {target.name}"
    if newer and not request.get("force"):
        raise AgentError(
            f"the database has migrations that release {target.name} does not know: "
            + ", ".join(newer),
            hint="if they only add (tables, nullable columns), the old code runs fine on "
            "them: `onebox rollback --force`. If they change or remove what the old code "
            "uses, restore the backup taken before them (`onebox backups`, `onebox restore`)",
            code=EXIT_CONFIG,
        )
    site_file = target / ".onebox" / "site.caddy"
    site = site_file.read_text() if site_file.is_file() else paths.caddy_site.read_text()
    switch(request, paths, target, site)
    return {"release": target.name, "previous": live, "slot": live_slot(paths), "newer": newer}


def choose(paths: AppPaths, live: str | None, wanted: str | None) -> Path:
    """The named release, or the newest one older than the live one."""
    releases = kept(paths)
    names = [p.name for p in releases]
    if wanted:
        if wanted not in names:
            raise AgentError(
                f"no release {wanted!r} on the server",
                hint=f"`onebox releases` lists them: {', '.join(names[-5:]) or 'none'}",
                code=EXIT_CONFIG,
            )
        if wanted == live:
            raise AgentError(f"release {wanted} is already live", code=EXIT_CONFIG)
        return paths.releases / wanted
    older = [p for p in releases if live is None or p.name < live]
    if not older:
        raise AgentError(
            "there is no earlier release to roll back to",
            hint="`onebox releases` lists the kept ones",
            code=EXIT_CONFIG,
        )
    return older[-1]


def release_env(paths: AppPaths, release: Path) -> dict[str, str]:
    return {**read_env_file(release / ".onebox" / "release.env"), **read_env_file(paths.secrets)}

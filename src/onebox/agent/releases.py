"""`onebox releases` and `onebox rollback`: the kept releases, and going back to one.

A rollback is a switch like a deploy's (start the release in the idle slot, health check,
its Caddy site, move traffic, stop the old slot) without building anything: the release's
directory and virtualenv are still there. Before it, onebox asks the database which
applied migrations the older code does not know: those stand in the way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import site_check
from .backup import load_settings
from .django import Release
from .env_refs import REFS_FILE
from .lock import deploy_lock
from .paths import AppPaths
from .protocol import EXIT_CONFIG, AgentError, step
from .release import COMPLETE, switch
from .restore import maintenance, restore_backup
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
        result = _rollback(request, paths)
    return {**result, **site_check.after_switch(paths, request)}


def _rollback(request: dict, paths: AppPaths) -> dict[str, object]:
    live = live_release(paths)
    target = choose(paths, live, request.get("release"))
    release = Release(paths.app, target, release_env(paths, target), request["manage"])
    site_file = target / ".onebox" / "site.caddy"
    site = site_file.read_text() if site_file.is_file() else paths.caddy_site.read_text()
    result: dict[str, object] = {"release": target.name, "previous": live, "restored": None}
    if request.get("restore_db"):
        newer = schema_check(release, release.migrations)
        result["newer"] = newer
        if newer:
            _restore_then_switch(request, paths, release, newer, site, result)
        else:
            switch(request, paths, target, site)
        return {**result, "slot": live_slot(paths)}

    def refuse_if_newer() -> None:
        newer = schema_check(release, pending.result)
        result["newer"] = newer
        if newer and not request.get("force"):
            raise AgentError(
                f"the database has migrations that release {target.name} does not know: "
                + ", ".join(newer),
                hint=refusal_hint(paths, target, newer),
                code=EXIT_CONFIG,
            )

    # The schema check is a Django process of its own (half a second): it runs while the
    # older release starts, and traffic moves only once it found nothing in the way.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(release.migrations)
        switch(request, paths, target, site, before_traffic=refuse_if_newer)
    return {**result, "slot": live_slot(paths)}


def schema_check(release: Release, migrations: Callable[[], dict]) -> list[str]:
    with step("schema check") as state:
        newer = migrations()["newer"]
        state["detail"] = f"{len(newer)} migration(s) newer than {release.path.name}"
    return newer


def _restore_then_switch(
    request: dict, paths: AppPaths, release: Release, newer: list[str], site: str, result: dict
) -> None:
    backup = backup_before(paths, release.path, newer)
    # The newer code must not meet the older schema either: the maintenance page stays up
    # from before the restore until the older release serves.
    with (
        maintenance(paths),
        deploy_lock(paths.backups / ".lock", request["deployer"], "restore"),
    ):
        with step(f"restore backup {backup}"):
            result["restored"] = restore_backup(paths, load_settings(paths), backup)
        check_schema_matches(release)
        switch(request, paths, release.path, site)


def backup_before(paths: AppPaths, target: Path, newer: list[str]) -> str:
    """The backup taken before the first deploy after `target` that applied one of `newer`:
    the database as the target release left it."""
    for path in kept(paths):
        entry = manifest(path)
        if path.name > target.name and set(entry.get("migrated") or []) & set(newer):
            if entry.get("backup_before"):
                return str(entry["backup_before"])
            break
    raise AgentError(
        f"onebox has no backup from before {', '.join(newer)} were applied",
        hint="`onebox backups` lists the backups: restore one taken while release "
        f"{target.name} was live with `onebox restore ID`, then `onebox rollback "
        f"{target.name} --force`",
        code=EXIT_CONFIG,
    )


def refusal_hint(paths: AppPaths, target: Path, newer: list[str]) -> str:
    try:
        backup = backup_before(paths, target, newer)
    except AgentError:
        backup = None
    lines = [
        "if they only add (tables, nullable columns), the old code runs fine on them: "
        "`onebox rollback --force`"
    ]
    if backup:
        lines.append(
            f"if they change or remove what the old code uses: `onebox rollback "
            f"{target.name} --restore-db` puts the database back as backup {backup} holds "
            "it (taken just before they were applied; data written since is lost, and kept "
            "in a safety backup)"
        )
    else:
        lines.append(
            "if they change or remove what the old code uses, restore a backup taken "
            "before them (`onebox backups`, `onebox restore`), then roll back with --force"
        )
    return "\n".join(lines)


def check_schema_matches(release: Release) -> None:
    newer = release.migrations()["newer"]
    if newer:
        raise AgentError(
            f"after the restore the database still has migrations release "
            f"{release.path.name} does not know: {', '.join(newer)}; nothing was switched",
            hint="`onebox backups` lists the backups; restore an older one with "
            "`onebox restore ID`",
        )


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
    return {
        **read_env_file(release / ".onebox" / "release.env"),
        **read_env_file(release / REFS_FILE),
        **read_env_file(paths.secrets),
    }

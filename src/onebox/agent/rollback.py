"""`onebox rollback`: back to a kept release, as one list of steps (ROLLBACK below).

A rollback is a cutover like a deploy's (start the release in the idle slot, health
check, its Caddy site, move traffic, stop the old slot; see cutover.py) without building
anything: the release's directory and virtualenv are still there. Before traffic moves,
onebox asks the database which applied migrations the older code does not know: those
stand in the way (or, with --restore-db, the backup from before them is restored first).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import apache_site, site_check, standby
from .backup import load_settings
from .cutover import STARTUP, TRAFFIC, Cutover
from .django import Release
from .lock import deploy_lock, roll_guard
from .paths import AppPaths
from .protocol import AgentError, ExitCode
from .releases import complete_releases, live_release, manifest, release_env
from .requests import RollbackRequest
from .restore import maintenance, restore_backup
from .steps import Step, run_steps
from .switch import MIGRATIONS_PATH, get_json, live_slot


@dataclass(kw_only=True)
class Rollback(Cutover):
    request: RollbackRequest
    release: Release | None = None
    pool: ThreadPoolExecutor | None = None
    migrations: Future[dict] | None = None  # read while the older release starts
    newer: list[str] = field(default_factory=list)  # applied, unknown to its code
    backup: str = ""  # restored first (--restore-db)
    restored: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.request.restore_db:
            # the database goes back under it: the standby's open connections (persistent
            # ones, a SQLite file replaced) would not see it; the release starts afresh
            self.warm = False

    @property
    def target(self) -> Release:
        assert self.release is not None
        return self.release


def read_schema(r: Rollback) -> None:
    # The schema check is a Django process of its own (half a second): it runs while the
    # older release starts, and traffic moves only once it found nothing in the way. A
    # standby running the release answers it from its loaded Django instead.
    assert r.pool is not None
    if r.warm:
        r.migrations = r.pool.submit(standby_schema, r)
    else:
        r.migrations = r.pool.submit(r.target.migrations)


def standby_schema(r: Rollback) -> dict:
    found = get_json(r.paths.socket(r.new), r.request.address, MIGRATIONS_PATH)
    if found is None or not isinstance(found.get("newer"), list):
        return r.target.migrations()  # (an ASGI app's, or a release older than the question)
    return found


def schema_check(r: Rollback) -> str:
    r.newer = (r.migrations.result() if r.migrations else r.target.migrations())["newer"]
    return f"{len(r.newer)} migration(s) newer than {r.release_dir.name}"


def refuse_if_newer(r: Rollback) -> str:
    detail = schema_check(r)
    if r.newer and not r.request.force:
        raise AgentError(
            f"the database has migrations that release {r.release_dir.name} does not know: "
            + ", ".join(r.newer),
            hint=refusal_hint(r.paths, r.release_dir, r.newer),
            code=ExitCode.CONFIG,
        )
    return detail


def restore_first(r: Rollback) -> None:
    """The newer code must not meet the older schema either: the maintenance page stays
    up from before the restore until the older release serves."""
    r.window.enter_context(maintenance(r.paths))
    r.window.enter_context(deploy_lock(r.paths.backups / ".lock", r.request.by, "restore"))
    r.restored = restore_backup(r.paths, load_settings(r.paths), r.backup)
    check_schema_matches(r.target)


def find_backup(r: Rollback) -> bool:
    if r.newer:
        r.backup = backup_before(r.paths, r.release_dir, r.newer)
    return bool(r.newer)


# A plain rollback: the schema is read while the release starts, and checked before
# traffic moves.
ROLLBACK: list[Step[Rollback]] = [
    Step("read the schema", read_schema, quiet=True),
    *STARTUP,
    Step("schema check", refuse_if_newer),
    *TRAFFIC,
]

# --restore-db: the backup from before the newer migrations goes back first.
ROLLBACK_RESTORING: list[Step[Rollback]] = [
    Step("schema check", schema_check),
    Step(
        "restore backup",
        restore_first,
        when=find_backup,
        shown=lambda r: f"restore backup {r.backup}",
    ),
    *STARTUP,
    *TRAFFIC,
]


def rollback(request: RollbackRequest, payload: Path) -> dict[str, Any]:
    paths = AppPaths(request.app)
    if not paths.unit_template.is_file():
        raise AgentError(
            f"{paths.app} is not set up on this server",
            hint="run `onebox setup`",
            code=ExitCode.CONFIG,
        )
    with roll_guard(paths.roll_lock, request.roll), deploy_lock(paths.lock, request.by, "rollback"):
        result = _rollback(request, paths)
    return {**result, **site_check.after_switch(paths, request)}


def site_for(paths: AppPaths, target: Path) -> str:
    """The site the release was deployed with; the live one when that was for the other
    proxy (a release from before the site moved between Apache and Caddy)."""
    apache = apache_site.in_front(paths)
    current = paths.apache_site if apache else paths.caddy_site
    frozen = target / ".onebox" / "site.caddy"
    text = frozen.read_text() if frozen.is_file() else ""
    if not text or apache_site.is_apache_site(text) != apache:
        return current.read_text()
    return text


def _rollback(request: RollbackRequest, paths: AppPaths) -> dict[str, Any]:
    live = live_release(paths)
    target = choose(paths, live, request.release)
    r = Rollback(
        request=request,
        paths=paths,
        release_dir=target,
        site=site_for(paths, target),
        release=Release(paths.app, target, release_env(paths, target), request.manage),
        standby=request.standby,
    )
    started = time.monotonic()
    with r.window, ThreadPoolExecutor(max_workers=1) as r.pool:
        run_steps(ROLLBACK_RESTORING if request.restore_db else ROLLBACK, r)
    return {
        "seconds": round(time.monotonic() - started, 2),
        "standby": r.warm,
        "release": target.name,
        "previous": live,
        "restored": r.restored,
        "newer": r.newer,
        "slot": live_slot(paths),
    }


def backup_before(paths: AppPaths, target: Path, newer: list[str]) -> str:
    """The backup taken before the first deploy after `target` that applied one of `newer`:
    the database as the target release left it."""
    for path in complete_releases(paths):
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
        code=ExitCode.CONFIG,
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
    releases = complete_releases(paths)
    names = [p.name for p in releases]
    if wanted:
        if wanted not in names:
            raise AgentError(
                f"no release {wanted!r} on the server",
                hint=f"`onebox releases` lists them: {', '.join(names[-5:]) or 'none'}",
                code=ExitCode.CONFIG,
            )
        if wanted == live:
            raise AgentError(f"release {wanted} is already live", code=ExitCode.CONFIG)
        return paths.releases / wanted
    older = [p for p in releases if live is None or p.name < live]
    running = standby.status(paths, live_slot(paths), memory=False).get("release")
    if running in [p.name for p in older]:
        # what served before the last deploy, kept running: not a newer one rolled back
        # from since (deploy A, B; roll back to A; deploy C: back to A, not to B)
        return paths.releases / running
    if not older:
        raise AgentError(
            "there is no earlier release to roll back to",
            hint="`onebox releases` lists the kept ones",
            code=ExitCode.CONFIG,
        )
    return older[-1]

"""`onebox restore` and `backup verify`: a backup loaded back, and proven to be what was
backed up; maintenance mode; the database put back after a failed migration.

A restore fetches the dump and checks it against the manifest before touching anything,
takes a safety backup meanwhile, shows the maintenance page while it loads, and compares
every table with the manifest; `verify` does the same in a scratch database.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import media_storage
from .backup import (
    MANIFEST,
    check_space,
    clean_tmp,
    engine,
    find,
    load_settings,
    record,
    repositories,
    take,
)
from .database import Engine, check_engine
from .lock import deploy_lock, roll_guard
from .paths import AppPaths
from .protocol import AgentError, step
from .requests import MaintenanceRequest, RestoreRequest, VerifyRequest
from .restic import Repository
from .steps import Step, run_steps
from .system import ensure_dir, run, write_file

MAINTENANCE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Down for maintenance</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}
</style></head><body><h1>Down for maintenance</h1>
<p>The site is being updated and will be back in a minute.</p></body></html>
"""


def open_backup(
    paths: AppPaths, settings: dict, backup_id: str | None
) -> tuple[Engine, Repository, dict, dict]:
    """The backup (the latest, or the named one), its manifest, and the engine to load it
    into; a backup of another engine is refused here, before anything is fetched."""
    db = engine(paths, settings)
    repo, entry = find(paths, settings, backup_id)
    clean_tmp(paths)
    with step(f"read backup {entry['id']}"):
        manifest = read_manifest(repo, entry, paths)
        check_engine(manifest["engine"], db.name, manifest["id"])
    return db, repo, entry, manifest


def read_manifest(repo: Repository, entry: dict, paths: AppPaths) -> dict:
    target = paths.backup_tmp / MANIFEST
    repo.dump(entry["parts"]["files"], str(paths.backups / MANIFEST), target)
    try:
        return json.loads(target.read_text())
    finally:
        target.unlink(missing_ok=True)


def fetch_dump(repo: Repository, entry: dict, manifest: dict, db: Engine) -> Path:
    """The dump, checked against the manifest: a truncated or altered one is never loaded."""
    target = db.staging() / manifest["db"]["file"]
    repo.dump(entry["parts"]["db"], f"/{manifest['db']['file']}", target)
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != manifest["db"]["sha256"]:
        target.unlink()
        raise AgentError(
            f"backup {manifest['id']} is damaged: its dump does not match the checksum taken "
            "when it was made; nothing was restored",
            hint="pick an older backup (`onebox backups`)",
        )
    return target


def compare(expected: dict, found: dict) -> list[str]:
    problems = []
    for table in sorted(set(expected) | set(found)):
        if table not in found:
            problems.append(f"{table}: missing")
        elif table not in expected:
            problems.append(f"{table}: not in the backup")
        elif expected[table][0] != found[table][0]:
            problems.append(f"{table}: {found[table][0]} rows, {expected[table][0]} expected")
        elif expected[table][1] != found[table][1]:
            problems.append(f"{table}: same row count, different content")
    return problems


# --------------------------------------------------------------------------- restore


def restore(request: RestoreRequest) -> dict[str, Any]:
    paths = AppPaths(request.app)
    settings = load_settings(paths)
    holder = request.by
    with (
        roll_guard(paths.roll_lock, ""),
        deploy_lock(paths.lock, holder, "restore"),
        deploy_lock(paths.backups / ".lock", holder, "restore"),
    ):
        return restore_backup(paths, settings, request.id)


def fetch_files(repo: Repository, entry: dict, paths: AppPaths) -> tuple[dict, Path]:
    """The manifest and the media folder of a backup, in one restic run. Fetched into
    shared/ (root's corner of it): a folder can only be renamed into the media's place
    from the same mount, and shared/ is one of its own (see public_files.py)."""
    target = media_staging(paths)
    repo.run(
        "restore",
        "--no-lock",
        entry["parts"]["files"],
        "--target",
        str(target),
        what="fetching the media files and the manifest",
    )
    manifest = json.loads((target / str(paths.backups / MANIFEST).lstrip("/")).read_text())
    restored = target / str(paths.media).lstrip("/")
    restored.mkdir(parents=True, exist_ok=True)
    return manifest, restored


def media_staging(paths: AppPaths) -> Path:
    """A root-only folder beside the media (the app can write in media/, not in shared/)."""
    target = paths.shared / ".onebox-restore"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o700)
    return target


def swap_media(paths: AppPaths, restored: Path, place: Path | None = None) -> None:
    """Replace the media folder's (or `place`'s) contents in two renames; owner and modes
    come from restic."""
    place = place or paths.media
    old = paths.shared / ".onebox-restore" / f"{place.name}-before"
    shutil.rmtree(old, ignore_errors=True)
    info = place.lstat() if place.exists() else None
    if place.exists():
        os.rename(place, old)
    os.rename(restored, place)
    if info:
        os.chown(place, info.st_uid, info.st_gid)
        os.chmod(place, info.st_mode & 0o7777)
    shutil.rmtree(old, ignore_errors=True)


def restore_bucket(r: Restoring) -> str:
    """The backup's copy of the media bucket back in the server's copy, then into the
    bucket (through the live release, with its keys): what the bucket lacks or holds
    otherwise. Objects uploaded since the backup stay."""
    bucket = r.manifest["media"]["bucket"]["bucket"]
    staged = r.paths.shared / ".onebox-restore" / str(r.paths.media_copy).lstrip("/")
    staged.mkdir(parents=True, exist_ok=True)
    swap_media(r.paths, staged, r.paths.media_copy)
    # the app's to read (and to refresh at the next backup), on whatever server the
    # backup was taken: its uid there may not be the app's here (chown -R follows no link)
    app = r.paths.app
    run(["chown", "-R", f"{app}:{app}", str(r.paths.media_copy)])
    ensure_dir(r.paths.media_copy, mode=0o2750, owner=app, group=app)
    release = media_storage.bucket_release(r.paths)
    if release is None:
        r.bucket = (
            f"the live release keeps media on the server: the files of bucket {bucket} are "
            f"in {r.paths.media_copy}, not uploaded"
        )
        return r.bucket
    done = media_storage.upload_copy(release, r.paths)
    r.bucket = f"bucket {done['bucket']}: {done['uploaded']} of {done['files']} file(s) put back"
    if done["left"]:
        r.bucket += f"; {done['left']} object(s) the backup does not have left as they are"
    return r.bucket


@contextmanager
def maintenance(paths: AppPaths) -> Iterator[None]:
    """Caddy answers 503 with a maintenance page meanwhile (no reload needed). A page that
    was up already (`onebox maintenance on`, or an outer window) stays up."""
    page, custom = paths.maintenance / "on.html", paths.current / ".onebox" / "maintenance.html"
    if page.exists():
        yield
        return
    set_maintenance(page, True, custom)
    try:
        yield
    finally:
        set_maintenance(page, False, custom)


def set_maintenance(page: Path, on: bool, custom: Path | None = None) -> bool:
    ensure_dir(page.parent, mode=0o755)
    if not on:
        existed = page.exists()
        page.unlink(missing_ok=True)
        return existed
    html = custom.read_text() if custom and custom.is_file() else MAINTENANCE_PAGE
    return write_file(page, html, mode=0o644)


def before_migrating(paths: AppPaths, pending: list[str] | None) -> dict[str, Any]:
    """The backup a deploy takes before it migrates (waiting for a running backup)."""
    settings = load_settings(paths)
    with deploy_lock(paths.backups / ".lock", "deploy", "backup", wait=600):
        return take(paths, settings, "predeploy", quiet=True)


def put_back(paths: AppPaths, taken: dict[str, Any]) -> None:
    """The database as the backup `taken` holds it, behind the maintenance page: after a
    failed migration, whose half-applied changes the old release must not meet."""
    settings = load_settings(paths)
    db = engine(paths, settings)
    manifest = taken["manifest"]
    with deploy_lock(paths.backups / ".lock", "deploy", "restore", wait=600):
        repo, entry = find(paths, settings, str(taken["id"]))
        dump = fetch_dump(repo, entry, manifest, db)
        try:
            with maintenance(paths):
                db.load(dump)
                problems = compare(manifest["db"]["tables"], db.checksums())
        finally:
            discard_dump(paths, dump)
    if problems:
        raise AgentError(
            f"putting back backup {taken['id']} left differences; restore it with "
            f"`onebox restore {taken['id']}`",
            output="\n".join(problems),
        )


def maintenance_mode(request: MaintenanceRequest) -> dict[str, Any]:
    paths = AppPaths(request.app)
    custom = paths.current / ".onebox" / "maintenance.html"
    changed = set_maintenance(paths.maintenance / "on.html", request.on, custom)
    return {"maintenance": request.on, "changed": changed}


# --------------------------------------------------------------------------- verify


def verify(request: VerifyRequest) -> dict[str, Any]:
    paths = AppPaths(request.app)
    settings = load_settings(paths)
    with deploy_lock(paths.backups / ".lock", request.by, "verify"):
        try:
            result = _verify(paths, settings, request.id)
        except AgentError as exc:
            record(paths, "verify", ok=False, error=exc.message)
            raise
    record(paths, "verify", ok=True, id=result["id"])
    return result


def _verify(paths: AppPaths, settings: dict, backup_id: str | None) -> dict[str, Any]:
    db, repo, entry, manifest = open_backup(paths, settings, backup_id)
    with step("fetch and check the dump"):
        dump = fetch_dump(repo, entry, manifest, db)
    try:
        with step("restore into a scratch database") as state:
            db.load(dump, scratch=True)
            problems = compare(manifest["db"]["tables"], db.checksums(scratch=True))
            if problems:
                raise AgentError(
                    f"backup {manifest['id']} does not restore to what was backed up",
                    output="\n".join(problems),
                )
            rows = sum(count for count, _ in manifest["db"]["tables"].values())
            state["detail"] = f"{len(manifest['db']['tables'])} tables, {rows} rows identical"
    finally:
        db.drop_scratch()
        discard_dump(paths, dump)
        clean_tmp(paths)
    checked = []
    for repository in repositories(paths, settings):
        with step(f"check the {repository.label} repository"):
            repository.run("check", "--read-data-subset", "10%", what="restic check")
            checked.append(repository.label)
    return {"id": manifest["id"], "tables": len(manifest["db"]["tables"]), "checked": checked}


def discard_dump(paths: AppPaths, dump: Path) -> None:
    if dump.parent == paths.backup_tmp:
        dump.unlink(missing_ok=True)
    else:  # a folder of the engine's own (SQLite's, beside the database)
        shutil.rmtree(dump.parent, ignore_errors=True)


# --------------------------------------------------------------------------- restore steps


@dataclass(kw_only=True)
class Restoring:
    """What the steps of a restore know, and what they found."""

    paths: AppPaths
    settings: dict
    db: Engine
    repo: Repository
    entry: dict
    pool: ThreadPoolExecutor
    window: ExitStack  # the maintenance page, from the database's load to the end
    safety_job: Future[dict[str, Any]] | None = None
    manifest: dict = field(default_factory=dict)
    media: Path = Path()
    dump: Path | None = None
    safety: dict = field(default_factory=dict)
    bucket: str = ""  # what went back into the media bucket


def check_disk(r: Restoring) -> None:
    check_space(r.paths, 2 * r.entry.get("db_bytes", 0) + r.entry.get("media_bytes", 0), "restore")


def start_safety(r: Restoring) -> None:
    # the safety backup and the fetch are independent: side by side
    r.safety_job = r.pool.submit(take, r.paths, r.settings, "safety", quiet=True)


def fetch_backup(r: Restoring) -> None:
    r.manifest, r.media = fetch_files(r.repo, r.entry, r.paths)
    check_engine(r.manifest["engine"], r.db.name, r.manifest["id"])


def fetch_checked_dump(r: Restoring) -> None:
    r.dump = fetch_dump(r.repo, r.entry, r.manifest, r.db)


def wait_for_safety(r: Restoring) -> str:
    assert r.safety_job is not None
    r.safety = r.safety_job.result()
    return f"backup {r.safety['id']}: the data as it was before this restore"


def restore_database(r: Restoring) -> str:
    assert r.dump is not None
    r.db.load(r.dump)
    problems = compare(r.manifest["db"]["tables"], r.db.checksums())
    if problems:
        raise AgentError(
            "the restored database differs from the backup", output="\n".join(problems)
        )
    return f"{len(r.manifest['db']['tables'])} tables, identical to the backup"


def put_back_safety(r: Restoring) -> str:
    """A restore that failed half-way: the data as the safety backup holds it."""
    safety = r.safety["id"]
    with step(f"put back the data of safety backup {safety}"):
        repo, entry = find(r.paths, r.settings, str(safety))
        r.db.load(fetch_dump(repo, entry, r.safety["manifest"], r.db))
    return f"; the database was put back as it was (safety backup {safety})"


RESTORE: list[Step[Restoring]] = [
    Step("disk space", check_disk),
    Step("start the safety backup", start_safety, quiet=True),
    Step(
        "fetch backup",
        fetch_backup,
        shown=lambda r: f"fetch backup {r.entry['id']}: manifest and media files",
    ),
    Step("fetch and check the dump", fetch_checked_dump),
    Step("safety backup", wait_for_safety),
    Step("maintenance page", lambda r: r.window.enter_context(maintenance(r.paths)), quiet=True),
    Step("restore database", restore_database, undo=put_back_safety),
    Step("restore media files", lambda r: swap_media(r.paths, r.media)),
    Step(
        "restore media bucket",
        restore_bucket,
        when=lambda r: bool(r.manifest.get("media", {}).get("bucket")),
    ),
]


def restore_backup(paths: AppPaths, settings: dict, backup_id: str | None) -> dict[str, Any]:
    """The backup's database and media files back in place (RESTORE); the caller holds
    both locks."""
    db = engine(paths, settings)
    repo, entry = find(paths, settings, backup_id)
    # What the snapshots' tags say is enough to refuse early, before anything is fetched.
    check_engine(entry.get("engine", "?"), db.name, entry["id"])
    clean_tmp(paths)
    with ThreadPoolExecutor(max_workers=1) as pool, ExitStack() as window:
        r = Restoring(
            paths=paths, settings=settings, db=db, repo=repo, entry=entry, pool=pool, window=window
        )
        try:
            run_steps(RESTORE, r)
        finally:
            if r.dump is not None:
                discard_dump(paths, r.dump)
    clean_tmp(paths)
    shutil.rmtree(paths.shared / ".onebox-restore", ignore_errors=True)
    return {
        "restored": r.manifest["id"],
        "from": repo.label,
        "safety_backup": r.safety["id"],
        "media_bucket": r.bucket,
    }

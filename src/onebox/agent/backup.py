"""`onebox backup` and `backups`: the app's data, kept (restore.py loads it back).

A backup is two restic snapshots tagged with one backup id: the database dump (streamed
from the dump tool into restic, never a copy of a live file) and the media folder with a
manifest beside it. The manifest records the dump's size and SHA-256 and, per table, the
row count and a checksum read in the dump's own snapshot. A restore fetches the dump,
checks it against the manifest before touching anything, takes a safety backup, and
compares the restored tables with the manifest; `verify` does the same in a scratch
database. Every repository is encrypted with the app's backup key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import media_storage
from .database import Engine, engine_for
from .lock import deploy_lock
from .paths import AppPaths
from .protocol import AgentError, ExitCode, emit
from .protocol import step as report_step
from .requests import BackupRequest, Request
from .restic import Repository, snapshot_id, tags_of
from .system import ensure_dir, read_env_file, run, tail, write_file

MANIFEST = "manifest.json"
ALWAYS_KEEP = 3  # the newest backups survive any policy (a safety backup is one of them)

# --------------------------------------------------------------------------- settings


def load_settings(paths: AppPaths) -> dict:
    if not paths.settings.is_file():
        raise AgentError(
            f"{paths.app} is not set up on this server",
            hint="run `onebox setup` first",
            code=ExitCode.CONFIG,
        )
    return json.loads(paths.settings.read_text())


def repositories(paths: AppPaths, settings: dict) -> list[Repository]:
    repos = [Repository(str(paths.backup_repo), paths, "server")]
    if settings["backup"].get("offsite"):
        repos.append(Repository(settings["backup"]["offsite"], paths, "off-site"))
    return repos


def engine(paths: AppPaths, settings: dict) -> Engine:
    return engine_for(paths.app, settings["database"], read_env_file(paths.secrets))


# --------------------------------------------------------------------------- backup


def backup(request: BackupRequest) -> dict[str, Any]:
    paths = AppPaths(request.app)
    settings = load_settings(paths)
    with deploy_lock(paths.backups / ".lock", request.by, "backup"):
        return take(paths, settings, request.reason)


def take(paths: AppPaths, settings: dict, reason: str, quiet: bool = False) -> dict[str, Any]:
    """One backup into the server's repository, then retention, then the off-site copy.

    `quiet`: no step events (when it runs beside other steps, as a restore's safety net)."""
    step = quiet_step if quiet else report_step
    started = time.monotonic()
    local, *offsite = repositories(paths, settings)
    db = engine(paths, settings)
    try:
        with step("disk space"):
            check_space(paths, db.size() + folder_size(paths.media), "back up")
        local.ensure()  # gone (deleted by hand, a lost disk): start a new one
        backup_id = new_id(paths)
        tags = ["onebox", f"app={paths.app}", f"id={backup_id}", f"reason={reason}"]
        with step("database dump") as state:
            dumped = dump_database(local, db, tags)
            state["detail"] = f"{human(dumped['bytes'])}, {len(dumped['tables'])} tables"
        with step("media files") as state:
            media: dict[str, Any] = {
                "files": count_files(paths.media),
                "bytes": folder_size(paths.media),
            }
            bucket = media_bucket(paths)
            if bucket:
                media |= {"bucket": bucket, "files": media["files"] + bucket["objects"]}
                media["bytes"] += bucket["bytes"]
            manifest = {
                "id": backup_id,
                "app": paths.app,
                "engine": db.name,
                "reason": reason,
                "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "release": paths.current.resolve().name if paths.current.is_symlink() else None,
                "db": dumped,
                "media": media,
            }
            write_file(paths.backups / MANIFEST, json.dumps(manifest, indent=2), mode=0o600)
            sizes = [f"engine={db.name}", f"db_bytes={dumped['bytes']}"]
            sizes += [f"media_bytes={media['bytes']}", f"media_files={media['files']}"]
            files = [paths.backups / MANIFEST, paths.media] + ([paths.media_copy] if bucket else [])
            local.backup_paths(files, [*tags, "part=files", *sizes])
            state["detail"] = f"{media['files']} files, {human(media['bytes'])}"
            if bucket:
                state["detail"] = f"{state['detail']} (bucket {bucket['bucket']}: " + (
                    f"{bucket['fetched']} fetched)"
                )
        if reason == "scheduled":  # the policy is for the daily backups; pruning is slow
            with step("retention") as state:
                state["detail"] = apply_retention(local, settings["backup"], prune=True)
    except AgentError as exc:
        record(paths, "backup", ok=False, error=exc.message, reason=reason)
        raise
    result: dict[str, object] = {"id": backup_id, "manifest": manifest}
    record(paths, "backup", ok=True, id=backup_id, reason=reason)
    for repo in offsite if reason != "safety" else []:  # a restore's net stays on the server
        with step(f"copy off-site ({repo.location})"):
            copy_offsite(local, repo, backup_id, settings["backup"], reason)
        result["offsite"] = repo.location
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def media_bucket(paths: AppPaths) -> dict[str, Any] | None:
    """With [media] storage = "s3": the bucket's objects, copied into the server's media
    copy (only what changed since the last backup), which the snapshot then holds."""
    release = media_storage.bucket_release(paths, backup=True)
    if release is None:
        return None
    copied = media_storage.copy_bucket(release, paths)
    if copied["unsafe"]:
        emit(
            "log",
            text=f"{copied['unsafe']} object(s) of bucket {copied['bucket']} not copied: "
            "their keys name no file (a folder marker, a '..', or both a and a/b)",
        )
    return copied


@contextmanager
def quiet_step(name: str) -> Iterator[dict[str, object]]:
    yield {}


def dump_database(repo: Repository, db: Engine, tags: list[str]) -> dict[str, Any]:
    """Stream the engine's dump into restic, hashing it on the way; no snapshot on failure."""
    process = repo.backup_stdin(db.dump_file, [*tags, "part=db"])
    digest, size = hashlib.sha256(), 0
    assert process.stdin and process.stdout and process.stderr

    def sink(chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)
        assert process.stdin
        process.stdin.write(chunk)

    try:
        tables = db.dump(sink)
    except BaseException:
        process.send_signal(signal.SIGTERM)  # restic saves no snapshot when interrupted
        process.wait()
        raise
    process.stdin.close()
    output = process.stdout.read().decode()
    error = process.stderr.read().decode(errors="replace")
    if process.wait() != 0:
        raise AgentError("restic could not store the dump", output=tail(error))
    return {
        "file": db.dump_file,
        "bytes": size,
        "sha256": digest.hexdigest(),
        "snapshot": snapshot_id(output),
        "tables": tables,
    }


def copy_offsite(
    local: Repository, remote: Repository, backup_id: str, policy: dict, reason: str
) -> None:
    remote.ensure(copy_from=local)
    ids = [s["id"] for s in local.snapshots() if tags_of(s).get("id") == backup_id]
    env_from = {"RESTIC_FROM_PASSWORD_FILE": str(local.paths.backup_key)}
    result = run(
        remote.argv("copy", "--from-repo", local.location, *ids),
        env={**remote.env, **env_from},
        check=False,
        timeout=7200,
    )
    if result.returncode != 0:
        raise AgentError(
            f"backup {backup_id} is on the server, but copying it off-site failed",
            output=tail(result.stderr),
            hint=remote.hint(result.stderr) or "check [backup] offsite and the network",
        )
    if reason == "scheduled":
        apply_retention(remote, policy, prune=True)


# --------------------------------------------------------------------------- listing


def group(snapshots: list[dict]) -> dict[str, dict]:
    """Snapshots -> backups, by their id tag; a backup is complete with both parts."""
    backups: dict[str, dict] = {}
    for snap in snapshots:
        tags = tags_of(snap)
        if "id" not in tags:
            continue
        entry = backups.setdefault(tags["id"], {"id": tags["id"], "parts": {}})
        entry["parts"][tags.get("part", "?")] = snap["short_id"]
        if tags.get("part") == "db" and snap.get("paths"):
            entry["dump_path"] = snap["paths"][0]  # the dump's name inside its snapshot
        entry["time"] = min(entry.get("time", snap["time"]), snap["time"])
        for key in ("reason", "engine", "db_bytes", "media_bytes", "media_files"):
            if key in tags:
                entry[key] = tags[key] if key in ("reason", "engine") else int(tags[key])
    for entry in backups.values():
        entry["complete"] = set(entry["parts"]) == {"db", "files"}
    return dict(sorted(backups.items()))


def list_backups(request: Request) -> dict[str, Any]:
    paths = AppPaths(request.app)
    settings = load_settings(paths)
    places: dict[str, dict] = {}
    warnings = []
    for repo in repositories(paths, settings):
        try:
            found = group(repo.snapshots()) if repo.exists() else {}
        except AgentError as exc:
            warnings.append(f"{repo.label} repository: {exc.message}")
            continue
        for backup_id, entry in found.items():
            merged = places.setdefault(backup_id, {**entry, "where": []})
            if entry["complete"]:
                merged["where"].append(repo.label)
    state = read_state(paths)
    return {
        "backups": list(places.values()),
        "warnings": warnings,
        "state": state,
        "server_repository": repositories(paths, settings)[0].locator,  # for `db pull`
    }


def find(paths: AppPaths, settings: dict, backup_id: str | None) -> tuple[Repository, dict]:
    """The backup to restore: the latest complete one, or the named one (server first)."""
    seen: list[str] = []
    for repo in repositories(paths, settings):
        if not repo.exists():
            continue
        complete = {k: v for k, v in group(repo.snapshots()).items() if v["complete"]}
        seen += list(complete)
        if backup_id is None and complete:
            return repo, complete[max(complete)]
        if backup_id in complete:
            return repo, complete[backup_id]
    if backup_id is None:
        raise AgentError("there is no backup yet", hint="run `onebox backup`", code=ExitCode.CONFIG)
    latest = ", ".join(sorted(set(seen))[-5:]) or "none"
    raise AgentError(
        f"no backup {backup_id!r}",
        hint=f"`onebox backups` lists them; the latest: {latest}",
        code=ExitCode.CONFIG,
    )


def show_key(request: Request) -> dict[str, Any]:
    paths = AppPaths(request.app)
    settings = load_settings(paths)
    if not paths.backup_key.is_file():
        raise AgentError(
            "this app has no backup key yet", hint="run `onebox setup`", code=ExitCode.CONFIG
        )
    public = Path(f"{paths.backup_ssh_key}.pub")
    return {
        "key": paths.backup_key.read_text().strip(),
        "key_file": str(paths.backup_key),
        "repositories": [repo.location for repo in repositories(paths, settings)],
        "ssh_public_key": public.read_text().strip() if public.is_file() else "",
    }


# --------------------------------------------------------------------------- helpers


def new_id(paths: AppPaths) -> str:
    backup_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    state = read_state(paths)
    if state.get("backup", {}).get("id", "") >= backup_id:  # two within one second
        time.sleep(1.1)
        return new_id(paths)
    return backup_id


def read_state(paths: AppPaths) -> dict:
    try:
        return json.loads(paths.backup_state.read_text())
    except (OSError, ValueError):
        return {}


def record(paths: AppPaths, kind: str, **fields: object) -> None:
    """What status shows: the last backup and verification, failed or not."""
    state = read_state(paths)
    entry = {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **fields}
    state[kind] = {**state.get(kind, {}), **entry} if fields.get("ok") is False else entry
    if fields.get("ok"):
        state[f"last_good_{kind}"] = entry
    write_file(paths.backup_state, json.dumps(state, indent=2), mode=0o600)
    if fields.get("reason") != "safety":
        emit("log", text=f"{kind}: {'ok' if fields.get('ok') else 'FAILED'}")


def check_space(paths: AppPaths, needed: int, what: str) -> None:
    ensure_dir(paths.backup_tmp, mode=0o700)
    free = shutil.disk_usage(paths.backups).free
    wanted = int(needed * 1.2) + (64 << 20)
    if free < wanted:
        raise AgentError(
            f"not enough disk space to {what}: about {human(wanted)} needed, {human(free)} free "
            f"on {paths.backups}",
            hint="free some space (old releases, logs, `apt-get clean`) or grow the disk; "
            "nothing was changed",
        )


def clean_tmp(paths: AppPaths) -> None:
    shutil.rmtree(paths.backup_tmp, ignore_errors=True)
    ensure_dir(paths.backup_tmp, mode=0o700)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def count_files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


# --------------------------------------------------------------------------- retention


def kept(ids: list[str], daily: int, weekly: int, monthly: int) -> set[str]:
    """The backup ids (YYYYmmdd-HHMMSS, UTC) a 7/4/12-style policy keeps: the newest of
    each of the last `daily` days, `weekly` ISO weeks and `monthly` months that have a
    backup, and always the newest ALWAYS_KEEP."""
    newest_first = sorted(ids, reverse=True)
    keep = set(newest_first[:ALWAYS_KEEP])
    buckets = (
        (daily, lambda d: d.strftime("%Y%m%d")),
        (weekly, lambda d: "{}-{:02d}".format(*d.isocalendar()[:2])),
        (monthly, lambda d: d.strftime("%Y%m")),
    )
    for count, bucket in buckets:
        seen: list[str] = []
        for backup_id in newest_first:
            key = bucket(datetime.strptime(backup_id[:15], "%Y%m%d-%H%M%S"))
            if key not in seen:
                if len(seen) == count:
                    break
                seen.append(key)
                keep.add(backup_id)
    return keep


def apply_retention(repo: Repository, policy: dict, prune: bool) -> str:
    snapshots = repo.snapshots()
    backups = group(snapshots)
    keep = kept(list(backups), policy["keep_daily"], policy["keep_weekly"], policy["keep_monthly"])
    drop = [s["id"] for s in snapshots if tags_of(s).get("id") not in keep]
    if drop:
        repo.run("forget", *drop, what="forgetting old backups")
    if prune and drop:
        repo.run("prune", what="pruning the repository")
    return f"{len(keep)} kept, {len(backups) - len(keep)} removed"

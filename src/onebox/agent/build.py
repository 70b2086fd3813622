"""The release's files on the server: unpacked beside the live one, its environment, its
static and media paths for Caddy, its SQLite link, and at last frozen read-only.

The steps that call these are listed in deploy.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from string import Template

from . import public_files, sizing, static_files
from .django import Release
from .env_refs import resolve, split
from .paths import AppPaths
from .protocol import AgentError, ExitCode, emit
from .releases import COMPLETE, complete_releases
from .requests import DeployRequest
from .system import ensure_symlink, format_env_file, run, write_file

HEALTH_WSGI = Path(__file__).with_name("wsgi_health.py")

HEALTH_ASGI = Path(__file__).with_name("asgi_health.py")


def workdir(request: DeployRequest) -> str:
    """The folder of manage.py inside the release, where the app's commands run."""
    return str(Path(request.manage).parent).strip(".") or "."


def check_required(required: list[str], available: dict[str, str]) -> None:
    missing = [name for name in required if name not in available]
    if missing:
        sets = " ".join(f"{name}=..." for name in missing)
        raise AgentError(
            f"the app needs {', '.join(missing)}, not set on the server",
            hint=f"run `onebox env set {sets}`, then deploy again",
            code=ExitCode.CONFIG,
        )


def release_env(request: DeployRequest, paths: AppPaths) -> dict[str, str]:
    """Non-secret settings of this release; the secrets file is read after it and wins."""
    address = request.address
    values = {
        "DJANGO_SETTINGS_MODULE": request.settings,
        "ALLOWED_HOSTS": address,
        "DJANGO_ALLOWED_HOSTS": address,
        "CSRF_TRUSTED_ORIGINS": f"https://{address}",
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{address}",
        "MEDIA_ROOT": str(paths.media),
        "ONEBOX_RELEASE": request.release_id,
        "PYTHONDONTWRITEBYTECODE": "1",
        **sizing.release_values(sizing.settle(request.serving)),
        **split(request.env)[0],  # (references: see env_refs.py)
    }
    return values


def release_at(
    paths: AppPaths,
    path: Path,
    request: DeployRequest,
    values: dict[str, str],
    secrets: dict[str, str],
) -> Release:
    """The release at `path` with its whole environment: its settings, the [env]
    references resolved against them and the secrets, then the secrets."""
    references = resolve(split(request.env)[1], {**values, **secrets})
    release = Release(paths.app, path, {**values, **references, **secrets}, request.manage)
    release.references = references
    return release


def check_release_space(paths: AppPaths, payload: Path) -> None:
    """Room for the release's files and some to spare, before the first byte is copied."""
    size = sum(p.lstat().st_size for p in payload.rglob("*"))
    needed, free = size + (32 << 20), shutil.disk_usage(paths.releases).free
    if free < needed:
        raise AgentError(
            f"not enough disk space for the release: {needed >> 20} MB needed (its "
            f"{size >> 20} MB and 32 MB to spare), {free >> 20} MB free on {paths.releases}; "
            "nothing was changed",
            hint="free some space (fewer releases with [deploy] keep, `apt-get clean`, old "
            "logs) or grow the disk",
        )


def copy_release(
    request: DeployRequest,
    payload: Path,
    paths: AppPaths,
    release_dir: Path,
    values: dict[str, str],
) -> None:
    """The release's files, its health check and its environment, owned by the app for
    the build."""
    app = paths.app
    check_release_space(paths, payload)
    if release_dir.exists():
        shutil.rmtree(release_dir)
    shutil.copytree(payload, release_dir, symlinks=True)
    write_file(release_dir / ".onebox" / "requirements.txt", request.lock)
    # the built-in health check, in front of the app (see wsgi_health.py)
    shutil.copyfile(HEALTH_WSGI, release_dir / ".onebox" / "onebox_wsgi.py")
    shutil.copyfile(HEALTH_ASGI, release_dir / ".onebox" / "onebox_asgi.py")
    write_file(
        release_dir / ".onebox" / "release.env",
        format_env_file(values, "Non-secret settings of this release, written by onebox."),
        mode=0o640,
        group=app,
    )
    run(["chown", "-R", f"{app}:{app}", str(release_dir)])  # build commands write here


def place_sqlite(release: Release, name: Path) -> str:
    """A SQLite file the settings keep inside the project (BASE_DIR / "db.sqlite3") would
    be read-only in the frozen release and gone with the next one: put a link to the
    app's database file (shared/db, backed up; its -wal and -shm go beside it) there."""
    paths = AppPaths(release.app)
    if name.exists() or name.is_symlink():
        raise AgentError(
            f"the settings keep the SQLite database at {name.relative_to(release.path)}, "
            "and the release ships a file there",
            hint=f'leave it out of the release ([build] exclude = ["{name.name}"]): onebox '
            f"keeps the database in {paths.db}, across releases and in its backups",
            code=ExitCode.CONFIG,
        )
    # As the app, in its still-writable release: root never writes through a path the
    # app's build could have planted links in, and the app can make no link it could not
    # make anyway.
    target = paths.db / "db.sqlite3"
    run(["mkdir", "-p", str(name.parent)], user=release.app, what="placing the SQLite file")
    run(["ln", "-s", str(target), str(name)], user=release.app, what="placing the SQLite file")
    return f"SQLite file {name.relative_to(release.path)} -> {target}"


def collect_static(request: DeployRequest, release: Release, settings: dict) -> str:
    """collectstatic (keeping a committed manifest's prebuilt files), the fixed paths
    Caddy serves, and the kept releases' hashed files bridged (see static_files.py)."""
    paths = AppPaths(release.app)
    static_root = Path(str(settings["STATIC_ROOT"] or release.path / "staticfiles"))
    committed = static_files.committed_manifest(static_root)
    notes = []
    if request.collectstatic:
        release.manage_py("collectstatic", "--noinput", what="collectstatic")
        kept = static_files.merge_manifest(static_root, committed) if committed else 0
        if kept:
            notes.append(f"kept {kept} prebuilt file(s) of the committed manifest")
    else:
        notes.append("collectstatic skipped ([build] collectstatic = false)")
    notes.append(link_public_dirs(paths, release.path, settings))
    return "; ".join(notes)


def link_public_dirs(paths: AppPaths, release_dir: Path, settings: dict) -> str:
    """Give Caddy fixed paths for static and media files, wherever the settings put them."""
    static_root = Path(str(settings["STATIC_ROOT"] or release_dir / "staticfiles"))
    media_root = Path(str(settings["MEDIA_ROOT"] or paths.media))
    public_files.check_roots(paths, release_dir, static_root, media_root)
    public = release_dir / ".onebox"
    ensure_symlink(public / "static", static_root)
    if media_root != paths.media and release_dir in media_root.parents:
        # MEDIA_ROOT inside the code would vanish with each release: keep it in shared/.
        if media_root.exists():
            shutil.rmtree(media_root)
        media_root.parent.mkdir(parents=True, exist_ok=True)
        media_root.symlink_to(paths.media)
        media_root = paths.media
    ensure_symlink(public / "media", media_root)
    return f"static {static_root}, media {media_root}"


def bridge_static(paths: AppPaths, release_dir: Path, keep: int) -> None:
    """Once frozen (nothing of the app's can change the folders any more): the kept
    releases' hashed static files, hard-linked where the new release has none."""
    static_root = (release_dir / ".onebox" / "static").resolve()
    earlier = [p for p in complete_releases(paths) if p != release_dir]
    earlier = sorted(earlier, reverse=True)[: max(keep - 1, 0)]
    bridged = static_files.bridge(release_dir, static_root, earlier)
    if bridged:
        emit("log", text=f"{bridged} hashed static file(s) of earlier releases still served")


def site_config(request: DeployRequest, settings: dict) -> str:
    """Fill in what only the server knows (the settings' URLs) in the client-rendered site."""
    return Template(request.files["site"]).safe_substitute(
        static_url=_url_prefix(settings["STATIC_URL"]),
        media_url=_url_prefix(settings["MEDIA_URL"]),
    )


def _url_prefix(url: object) -> str:
    text = str(url or "")
    if not text or "://" in text:
        # served elsewhere (a CDN): a prefix no request uses keeps Caddy's block inert
        return "/.onebox-not-served-here/"
    return "/" + text.strip("/") + "/"


def freeze(
    release_dir: Path, app: str, request: DeployRequest, site: str, settings: dict, migrated: dict
) -> None:
    """From here the release is read-only to the app: its code cannot be changed by it.

    The manifest and the release's own Caddy site stay with it, for `releases` and
    `rollback` (which puts back the site of the release it returns to)."""
    run(["chown", "-R", f"root:{app}", str(release_dir)])
    run(["chmod", "-R", "u+rwX,g+rX,g-w,o-rwx", str(release_dir)])
    if (release_dir / ".onebox").is_symlink() or not (release_dir / ".onebox").is_dir():
        # the build (as the app) replaced onebox's folder: root writes nothing through it
        raise AgentError("the release's .onebox folder was replaced during the build; "
                         "nothing was switched", code=ExitCode.CONFIG)  # fmt: skip
    public_files.remove_outside_links(release_dir, release_dir / ".onebox" / "static")
    manifest: dict[str, object] = {
        "release_id": request.release_id,
        "deployer": request.by,
        "lock_hash": request.lock_hash,
        "commit": request.commit,
    }
    manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["migrations"] = settings.get("MIGRATIONS", [])  # what its code has
    manifest["migrated"] = migrated["applied"]  # what this deploy applied
    manifest["backup_before"] = migrated["backup"]  # for `rollback --restore-db`
    # where its uploads live, and how its Django starts: for backups (media_storage.py)
    manifest["media"] = request.media
    manifest["manage"] = request.manage
    write_file(release_dir / ".onebox" / "site.caddy", site, mode=0o640, group=app)
    write_file(
        release_dir / ".onebox" / "manifest.json",
        json.dumps(manifest, indent=2),
        mode=0o640,
        group=app,
    )
    write_file(release_dir / COMPLETE, "", mode=0o640, group=app)

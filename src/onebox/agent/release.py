"""`onebox deploy` on the server: build a release beside the live one, then switch to it.

Pipeline: lock -> unpack -> virtualenv -> build commands -> collectstatic -> migrate ->
release commands -> freeze -> start in the idle slot -> health check -> Caddy site ->
switch -> retire the old slot -> prune. Until the switch nothing the live release uses is touched; a
failure before it removes the half-built release and leaves the site as it was.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from string import Template

from . import (
    background,
    baseline,
    cancel,
    deploy_check,
    env_refs,
    public_files,
    redis_server,
    restore,
    site_check,
    static_files,
)
from .django import Release, hint_for
from .lock import deploy_lock
from .paths import AppPaths
from .protocol import EXIT_CONFIG, AgentError, emit, step
from .provision import (
    check_calendar,
    check_supported,
    ensure_secrets,
    ensure_units,
    install_caddy_config,
)
from .switch import (
    check_pages,
    idle_slot,
    journal,
    live_slot,
    retire,
    route_to,
    start_slot,
    wait_healthy,
    watch,
)
from .system import (
    apt_install,
    ensure_symlink,
    format_env_file,
    read_env_file,
    run,
    write_file,
)
from .venv import ensure_venv, prune_venvs

COMPLETE = ".onebox/complete"
HEALTH_WSGI = Path(__file__).with_name("wsgi_health.py")
HEALTH_ASGI = Path(__file__).with_name("asgi_health.py")


def deploy(request: dict, payload: Path) -> dict[str, object]:
    paths = AppPaths(request["app"])
    check_supported()
    if not paths.root.is_dir() or not paths.unit_template.is_file():
        raise AgentError(
            f"{paths.app} is not set up on this server",
            hint="run `onebox setup` first",
            code=EXIT_CONFIG,
        )
    with deploy_lock(paths.lock, request["deployer"], "deploy"):
        request["release_id"] = new_release_id(paths)
        return _deploy(request, payload, paths)


def new_release_id(paths: AppPaths, now: float | None = None) -> str:
    """Release ids sort in deploy order, so they come from the server's clock (a client
    whose clock is behind would make its release the oldest), and always after the
    newest release there, should the server's own clock have gone back."""
    now = time.time() if now is None else now
    wanted = _stamp(now)
    existing = [p.name for p in paths.releases.iterdir()] if paths.releases.is_dir() else []
    newest = max((name for name in existing if RELEASE_ID.fullmatch(name)), default="")
    if wanted > newest:
        return wanted
    parsed = time.strptime(newest[:15], "%Y%m%d-%H%M%S")
    return _stamp(calendar.timegm(parsed) + int(newest[16:]) / 1000 + 0.001)


RELEASE_ID = re.compile(r"\d{8}-\d{6}-\d{3}")


def _stamp(moment: float) -> str:
    millis = round(moment * 1000)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(millis // 1000)) + f"-{millis % 1000:03d}"


def check_engine_set_up(paths: AppPaths, engine: str) -> None:
    settings = json.loads(paths.settings.read_text()) if paths.settings.is_file() else {}
    found = settings.get("database", {}).get("engine")
    if found != engine:
        raise AgentError(
            f"onebox.toml says [database] engine = {engine!r}, but the server was set up for "
            f"{found or 'an older onebox'}",
            hint="run `onebox setup` first (it installs and connects the database)",
            code=EXIT_CONFIG,
        )


def _deploy(request: dict, payload: Path, paths: AppPaths) -> dict[str, object]:
    started = time.monotonic()
    check_engine_set_up(paths, request.get("engine", "sqlite"))
    ensure_secrets(paths)
    secrets = read_env_file(paths.secrets)
    check_required(request["secrets"], {**request.get("env", {}), **secrets})
    if request.get("redis"):
        with step("redis"):
            redis_server.check_running(paths.app)
    for name, entry in request.get("background", {}).get("schedules", {}).items():
        check_calendar(entry["calendar"], f"[schedule] {name} when")
    release_dir = paths.releases / request["release_id"]
    try:
        # Holds the maintenance page from a breaking migration (--allow-breaking) until
        # the new release serves: old code never meets the new schema.
        with ExitStack() as window:
            release = unpack(request, payload, paths, release_dir, secrets)
            settings, migrated = run_django_steps(request, release, window)
            site = site_config(request, settings)
            with step("freeze release"):
                freeze(release_dir, paths.app, request, site, settings, migrated)
                background.write_release(
                    release_dir, paths.app, request.get("background", {}), workdir(request)
                )
                if release.references:
                    env_refs.write(release_dir, release.references)
                bridge_static(paths, release_dir, request.get("keep", 5))
            with step("systemd units") as state:  # [app] workers or wsgi may have changed
                state["changed"] = ensure_units(paths, request["files"])
            moved = switch(request, paths, release_dir, site)
    except BaseException:
        discard(paths, release_dir)
        prune_venvs(paths)  # a failed release's new virtualenv goes with it
        raise
    hooks_failed = after_switch(request, release)
    pruned = prune(paths, request.get("keep", 5))
    return {
        # what stands between visitors and the new release (maintenance mode, say)
        **site_check.after_switch(paths, request),
        "hooks_failed": hooks_failed,
        "release": request["release_id"],
        "slot": live_slot(paths),
        "pruned": pruned,
        "migrations": migrated,
        "background": moved,
        "seconds": round(time.monotonic() - started, 2),
    }


def workdir(request: dict) -> str:
    """The folder of manage.py inside the release, where the app's commands run."""
    return str(Path(request["manage"]).parent).strip(".") or "."


def check_required(required: list[str], available: dict[str, str]) -> None:
    missing = [name for name in required if name not in available]
    if missing:
        sets = " ".join(f"{name}=..." for name in missing)
        raise AgentError(
            f"the app needs {', '.join(missing)}, not set on the server",
            hint=f"run `onebox env set {sets}`, then deploy again",
            code=EXIT_CONFIG,
        )


def unpack(
    request: dict, payload: Path, paths: AppPaths, release_dir: Path, secrets: dict[str, str]
) -> Release:
    """The release's files, its environment and its virtualenv, owned by the app for the build."""
    app = paths.app
    values = release_env(request, paths)
    references = env_refs.resolve(env_refs.split(request.get("env", {}))[1], {**values, **secrets})
    with step("unpack release"):
        check_release_space(paths, payload)
        if release_dir.exists():
            shutil.rmtree(release_dir)
        shutil.copytree(payload, release_dir, symlinks=True)
        write_file(release_dir / ".onebox" / "requirements.txt", request["lock"])
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
    with step("build packages") as state:
        state["changed"] = bool(apt_install(request.get("packages", [])))
        if state["changed"] and "system" not in request.get("security_skip", {}):
            baseline.restrict_compilers()  # build-essential brings gcc and as
    with step("virtualenv") as state:
        venv, state["changed"] = ensure_venv(paths, request)
        os.symlink(venv, release_dir / ".venv")
    release = Release(app, release_dir, {**values, **references, **secrets}, request["manage"])
    release.references = references
    return release


def run_django_steps(
    request: dict, release: Release, window: ExitStack
) -> tuple[dict[str, object], dict[str, object]]:
    """Build commands, collectstatic, migrate, release commands; return the real settings
    and what the migrate step did (its backup, the migrations applied, the check)."""
    for command in request.get("build", []):
        with step(f"build: {command}"):
            release.shell(command, f"build command `{command}`")
    skip = request.get("security_skip", {})
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Django's deployment check is a process of its own: it runs beside the settings
        # and collectstatic (reading the settings in it too was measured slower: two
        # cores, three Djangos).
        checked = None if "django" in skip else pool.submit(release.deploy_check)
        with step("settings") as state:
            settings = release.settings()
            if settings.get("SQLITE_IN_RELEASE"):
                state["detail"] = place_sqlite(release, Path(str(settings["SQLITE_IN_RELEASE"])))
                settings = release.settings()
        with step("collectstatic") as state:
            state["detail"] = collect_static(request, release, settings)
        check_deploy(checked, skip, request, release)
    for command in request.get("before_migrate", []):
        with step(f"before migrate: {command}"):
            release.shell(command, f"before-migrate command `{command}`")
    migrated = migrate(AppPaths(release.app), release, settings, request, window)
    for command in request.get("release", []):
        with step(f"release: {command}"):
            release.shell(command, f"release command `{command}`")
    return settings, migrated


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
            code=EXIT_CONFIG,
        )
    # As the app, in its still-writable release: root never writes through a path the
    # app's build could have planted links in, and the app can make no link it could not
    # make anyway.
    target = paths.db / "db.sqlite3"
    run(["mkdir", "-p", str(name.parent)], user=release.app, what="placing the SQLite file")
    run(["ln", "-s", str(target), str(name)], user=release.app, what="placing the SQLite file")
    return f"SQLite file {name.relative_to(release.path)} -> {target}"


def collect_static(request: dict, release: Release, settings: dict) -> str:
    """collectstatic (keeping a committed manifest's prebuilt files), the fixed paths
    Caddy serves, and the kept releases' hashed files bridged (see static_files.py)."""
    paths = AppPaths(release.app)
    static_root = Path(str(settings["STATIC_ROOT"] or release.path / "staticfiles"))
    committed = static_files.committed_manifest(static_root)
    notes = []
    if request.get("collectstatic", True):
        release.manage_py("collectstatic", "--noinput", what="collectstatic")
        kept = static_files.merge_manifest(static_root, committed) if committed else 0
        if kept:
            notes.append(f"kept {kept} prebuilt file(s) of the committed manifest")
    else:
        notes.append("collectstatic skipped ([build] collectstatic = false)")
    notes.append(link_public_dirs(paths, release.path, settings))
    return "; ".join(notes)


def bridge_static(paths: AppPaths, release_dir: Path, keep: int) -> None:
    """Once frozen (nothing of the app's can change the folders any more): the kept
    releases' hashed static files, hard-linked where the new release has none."""
    static_root = (release_dir / ".onebox" / "static").resolve()
    earlier = [p for p in complete_releases(paths) if p != release_dir]
    earlier = sorted(earlier, reverse=True)[: max(keep - 1, 0)]
    bridged = static_files.bridge(release_dir, static_root, earlier)
    if bridged:
        emit("log", text=f"{bridged} hashed static file(s) of earlier releases still served")


def complete_releases(paths: AppPaths) -> list[Path]:
    if not paths.releases.is_dir():
        return []
    return sorted(p for p in paths.releases.iterdir() if (p / COMPLETE).is_file())


def check_deploy(
    checked: Future[list[dict]] | None, skip: dict[str, str], request: dict, release: Release
) -> None:
    """Refuse a release that Django itself calls unfit for production (before anything
    about the database or the live site changes); see deploy_check.py."""
    if checked is None:
        emit("log", text=f"django check --deploy skipped: {skip['django']}")
        return
    with step("django check --deploy") as state:
        switches = request.get("switches", {})
        shown = deploy_check.gate(checked.result(), switches, set(release.env))
        state["detail"] = f"{len(shown)} note(s), none fatal" if shown else "no issues"
    deploy_check.report(shown)


TRANSACTIONAL_DDL = ("sqlite", "postgresql")

EXPAND_CONTRACT = """\
ship it in steps the serving code can live with (expand, then contract):
  - a new column: add it with null=True (or db_default=...), deploy; fill it; then make it
    NOT NULL in a later deploy, once every release still serving writes it;
  - dropping a column or table: first deploy code that no longer uses it (remove the field
    from the model state only, with migrations.SeparateDatabaseAndState), then drop it in
    a later deploy;
  - renaming: add the new column, write both, copy the data, switch reads, drop the old;
  - or take a short outage instead: `onebox deploy --allow-breaking` shows the
    maintenance page from before the migration until the new release serves"""


def migrate(
    paths: AppPaths, release: Release, settings: dict, request: dict, window: ExitStack
) -> dict[str, object]:
    """Migrate, with a backup first when anything is pending.

    The pending operations are checked first: one that would break the code still serving
    (a dropped column, a NOT NULL one it leaves out…) is refused, or with --allow-breaking
    run behind the maintenance page (held in `window` until the switch). If a migration
    fails after changing the schema (always possible on MySQL, whose DDL is not
    transactional; on the others when an earlier migration of the run was committed), the
    database is put back from the backup, so the live release never meets a
    half-migrated schema."""
    pending = settings.get("PENDING")
    done: dict[str, object] = {"applied": pending or [], "backup": None, "breaking": []}
    taken = None
    if pending and settings.get("APPLIED"):  # a first migrate has nothing to protect
        breaking = check_pending(release, request.get("allow_breaking", False))
        done["breaking"] = breaking
        if breaking:
            window.enter_context(restore.maintenance(paths))
            emit("log", text="breaking migration allowed: the maintenance page is up")
        with step("backup before migrating") as state:
            taken = restore.before_migrating(paths, pending)
            done["backup"] = taken["id"]
            state["detail"] = f"backup {taken['id']}; pending: {', '.join(pending)}"
    with step("migrate") as state:
        try:
            output = release.manage_py("migrate", "--noinput", what="migrate")
        except AgentError as exc:
            engine = request.get("engine", "sqlite")
            if taken is not None and schema_changed(release, settings, engine):
                emit("log", text=f"putting the database back as backup {taken['id']} holds it")
                restore.put_back(paths, taken)
                exc.message += f"; the database was put back from backup {taken['id']}"
            raise
        state["changed"] = "Applying " in output
    return done


def check_pending(release: Release, allow_breaking: bool) -> list[str]:
    """The breaking operations among the pending migrations (refused unless allowed)."""
    with step("migration check") as state:
        found = release.check_migrations()
        breaking = [
            f"{o['migration']}: {o['operation']} ({o['why']})"
            for o in found
            if o["verdict"] == "breaking"
        ]
        unchecked = [
            f"{o['migration']}: {o['operation']}" for o in found if o["verdict"] == "unchecked"
        ]
        state["detail"] = (
            f"{len(found)} operation(s): {len(breaking)} breaking, {len(unchecked)} unchecked"
        )
    if unchecked:
        emit(
            "log", text="not checked (onebox cannot tell what they change): " + "; ".join(unchecked)
        )
    if breaking and not allow_breaking:
        raise AgentError(
            f"{len(breaking)} migration operation(s) would break the release still serving "
            "while it runs (and any rollback); nothing was migrated",
            output="\n".join(breaking),
            hint=EXPAND_CONTRACT,
            code=EXIT_CONFIG,
        )
    return breaking


def schema_changed(release: Release, settings: dict, engine: str) -> bool:
    if engine not in TRANSACTIONAL_DDL or settings.get("APPLIED") is None:
        return True
    return release.migrations()["applied"] != settings["APPLIED"]


def release_env(request: dict, paths: AppPaths) -> dict[str, str]:
    """Non-secret settings of this release; the secrets file is read after it and wins."""
    address = request["address"]
    values = {
        "DJANGO_SETTINGS_MODULE": request["settings"],
        "ALLOWED_HOSTS": address,
        "DJANGO_ALLOWED_HOSTS": address,
        "CSRF_TRUSTED_ORIGINS": f"https://{address}",
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{address}",
        "MEDIA_ROOT": str(paths.media),
        "ONEBOX_RELEASE": request["release_id"],
        "PYTHONDONTWRITEBYTECODE": "1",
        **env_refs.split(request.get("env", {}))[0],  # (references: see env_refs.py)
    }
    return values


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


def site_config(request: dict, settings: dict) -> str:
    """Fill in what only the server knows (the settings' URLs) in the client-rendered site."""
    return Template(request["files"]["site"]).safe_substitute(
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
    release_dir: Path, app: str, request: dict, site: str, settings: dict, migrated: dict
) -> None:
    """From here the release is read-only to the app: its code cannot be changed by it.

    The manifest and the release's own Caddy site stay with it, for `releases` and
    `rollback` (which puts back the site of the release it returns to)."""
    run(["chown", "-R", f"root:{app}", str(release_dir)])
    run(["chmod", "-R", "u+rwX,g+rX,g-w,o-rwx", str(release_dir)])
    if (release_dir / ".onebox").is_symlink() or not (release_dir / ".onebox").is_dir():
        # the build (as the app) replaced onebox's folder: root writes nothing through it
        raise AgentError("the release's .onebox folder was replaced during the build; "
                         "nothing was switched", code=EXIT_CONFIG)  # fmt: skip
    public_files.remove_outside_links(release_dir, release_dir / ".onebox" / "static")
    manifest = {key: request[key] for key in ("release_id", "deployer", "lock_hash", "commit")}
    manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["migrations"] = settings.get("MIGRATIONS", [])  # what its code has
    manifest["migrated"] = migrated["applied"]  # what this deploy applied
    manifest["backup_before"] = migrated["backup"]  # for `rollback --restore-db`
    write_file(release_dir / ".onebox" / "site.caddy", site, mode=0o640, group=app)
    write_file(
        release_dir / ".onebox" / "manifest.json",
        json.dumps(manifest, indent=2),
        mode=0o640,
        group=app,
    )
    write_file(release_dir / COMPLETE, "", mode=0o640, group=app)


def switch(
    request: dict,
    paths: AppPaths,
    release_dir: Path,
    site: str,
    before_traffic: Callable[[], None] | None = None,
) -> dict[str, object]:
    """Start the release beside the live one; only once it is healthy does anything the
    live release uses change: the Caddy site (if the settings' URLs moved), then traffic.

    Then a probation ([deploy] probation seconds; rollbacks skip it): the old release keeps
    running, and if the new one crashes or stops answering, traffic goes back to it."""
    old = live_slot(paths)
    new = idle_slot(paths)
    old_release = paths.slot_link(old).resolve() if old else None
    old_site = paths.caddy_site.read_text() if paths.caddy_site.is_file() else None
    if not site_check.caddy_active():  # stopped by hand, or crashed: no visitor gets in
        with step("start Caddy (it was not running)"):
            run(["systemctl", "start", "caddy"], what="starting Caddy")
    try:
        with step(f"start ({new} slot)"):
            start_slot(paths, new, release_dir)
        with step("health check") as state:
            wait_healthy(paths, new, request["address"], request["health_path"])
            pages = request.get("health_pages") or {}
            check_pages(paths, new, request["address"], pages)
            state["detail"] = ", ".join([request["health_path"], *pages.get("paths", [])])
        with step("caddy site") as state:
            state["changed"] = install_caddy_config(paths.caddy_site, site)
        if before_traffic:  # the last word before traffic moves (a rollback's schema check)
            before_traffic()
        cancel.commit()  # past this, `onebox cancel` is refused
    except BaseException:
        run(["systemctl", "stop", paths.unit(new)], check=False)
        if old_site is not None:
            install_caddy_config(paths.caddy_site, old_site)
        raise
    with step("switch traffic"):
        route_to(paths, new, release_dir)
        emit("log", text=f"traffic now goes to release {release_dir.name} ({new} slot)")
    seconds = request.get("probation", 0)
    if seconds and old and old_release and old_release.is_dir():
        with step(f"probation ({seconds}s, the old release still running)"):
            problem = watch(paths, new, request["address"], request["health_path"], seconds)
            if problem:
                output = journal(paths, new)
                route_back(paths, old, old_release, new, old_site)
                raise AgentError(
                    f"the new release {problem}; traffic is back on release {old_release.name}",
                    output=output,
                    hint=hint_for(output),
                )
    moved = move_background(request, paths, release_dir, (old, old_release, new, old_site))
    with step("stop old release"):
        retire(paths, old, new)
    return moved


def move_background(
    request: dict, paths: AppPaths, release_dir: Path, web: tuple
) -> dict[str, object]:
    """Processes and schedules onto the release, once its web side passed probation; if
    a process will not stay up, web and processes go back to the previous release."""
    old, old_release, new, old_site = web
    previous = background.current_release(paths)
    try:
        return background.move(paths, release_dir, request.get("probation", 0))
    except AgentError as exc:
        if old and old_release and old_release.is_dir():
            route_back(paths, old, old_release, new, old_site)
            exc.message += f"; web traffic is back on release {old_release.name}"
        if previous and previous != release_dir:
            try:
                background.move(paths, previous, 0)
                exc.message += ", and the processes too"
            except AgentError as again:
                exc.message += f"; the previous processes did not start either: {again.message}"
        else:
            background.stop_all(paths)
        raise


def route_back(
    paths: AppPaths, old: str, old_release: Path, new: str, old_site: str | None
) -> None:
    route_to(paths, old, old_release)
    run(["systemctl", "stop", paths.unit(new)], check=False, timeout=120)
    # The new slot, restarted by systemd, may have re-linked live.sock in between
    # (its ExecStartPost): point it back once more, now that nothing can.
    route_to(paths, old, old_release)
    if old_site is not None:
        install_caddy_config(paths.caddy_site, old_site)
    emit("log", text=f"traffic is back on release {old_release.name} ({old} slot)")


def after_switch(request: dict, release: Release) -> list[str]:
    """Hooks once the release serves (a cache warm-up, a notification). Traffic has moved
    already: a failing hook is reported, and changes nothing."""
    failed = []
    for command in request.get("after_switch", []):
        try:
            with step(f"after switch: {command}"):
                release.shell(command, f"after-switch command `{command}`")
        except AgentError as exc:
            emit("log", text=f"warning: {exc.message}; the new release serves all the same")
            failed.append(command)
    return failed


def discard(paths: AppPaths, release_dir: Path) -> None:
    """A failed release never counts toward the kept ones and never stays half-built."""
    current = paths.current.resolve() if paths.current.is_symlink() else None
    if release_dir.exists() and release_dir.resolve() != current:
        shutil.rmtree(release_dir, ignore_errors=True)


def prune(paths: AppPaths, keep: int) -> list[str]:
    live = {paths.current.resolve()} if paths.current.is_symlink() else set()
    for slot in ("blue", "green"):
        if paths.slot_link(slot).is_symlink():
            live.add(paths.slot_link(slot).resolve())
    releases = sorted(p for p in paths.releases.iterdir() if p.is_dir())
    complete = complete_releases(paths)
    removed = []
    for path in releases:
        if path in live:
            continue
        if path not in complete or path not in complete[-keep:]:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    prune_venvs(paths)
    return removed

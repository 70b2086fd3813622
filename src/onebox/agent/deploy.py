"""`onebox deploy` on the server: build a release beside the live one, then move onto it.

STEPS below is the whole deploy, top to bottom. Until traffic moves nothing the live
release uses is touched; a failure before it removes the half-built release and leaves
the site as it was, and one after it (probation, the processes) puts traffic back.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import (
    background,
    baseline,
    build,
    deploy_check,
    env_refs,
    media_storage,
    migrate,
    redis_server,
    restore,
    site_check,
    standby,
    switch,
)
from . import deploy_plan as plan
from .cutover import STARTUP, TRAFFIC, Cutover
from .django import Release
from .lock import deploy_lock, roll_guard
from .paths import AppPaths
from .protocol import AgentError, ExitCode, emit
from .provision import check_calendar, check_supported, ensure_secrets, ensure_units
from .releases import discard, new_release_id, prune
from .requests import DeployRequest
from .steps import Each, Step, plan_steps, run_steps
from .switch import live_slot
from .system import apt_install, read_env_file, run
from .venv import compile_code, ensure_venv, prune_venvs


@dataclass(kw_only=True)
class Deploy(Cutover):
    """What the steps know, and what they found, as the deploy goes."""

    request: DeployRequest
    payload: Path = Path()
    secrets: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # the release's own settings
    release: Release | None = None
    settings: dict = field(default_factory=dict)  # Django's, read in the release
    pool: ThreadPoolExecutor | None = None
    freeing: threading.Thread | None = None  # the standby on the idle slot, stopping
    checked: Future[list[dict]] | None = None  # `check --deploy`, beside collectstatic
    backup: dict | None = None  # taken before migrating
    migrated: dict = field(default_factory=dict)
    hooks_failed: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    scratch: Path = Path()  # a dry run's copy of the release, to read its settings

    def new_background(self) -> dict[str, Any]:
        return self.request.background

    @property
    def built(self) -> Release:
        assert self.release is not None, "the release is made by the virtualenv step"
        return self.release

    @property
    def skip(self) -> dict[str, str]:
        return self.request.security_skip

    @property
    def pending(self) -> list[str]:
        return self.settings.get("PENDING") or []

    @property
    def protect(self) -> bool:
        """Pending migrations on a database that has some: check them, back it up."""
        return bool(self.pending and self.settings.get("APPLIED"))


def redis(d: Deploy) -> None:
    redis_server.check_running(d.paths.app)


def unpack(d: Deploy) -> None:
    build.copy_release(d.request, d.payload, d.paths, d.release_dir, d.values)


def build_packages(d: Deploy) -> bool:
    changed = bool(apt_install(d.request.packages))
    if changed and "system" not in d.skip:
        baseline.restrict_compilers()  # build-essential brings gcc and as
    return changed


def virtualenv(d: Deploy) -> bool:
    venv, changed = ensure_venv(d.paths, d.request)
    os.symlink(venv, d.release_dir / ".venv")
    compile_code(d.release_dir, d.paths.app)
    d.release = build.release_at(d.paths, d.release_dir, d.request, d.values, d.secrets)
    return changed


def shell(what: str):
    def action(d: Deploy, command: str) -> None:
        d.built.shell(command, f"{what} command `{command}`")

    return action


def free_idle_slot(d: Deploy) -> None:
    """The standby on the idle slot (the release before the live one) begins stopping
    now, beside the build: the new release starts in its place, and a gthread worker
    takes up to a second to stop (measured: 0.9 s of a 4 s code-only deploy). A deploy
    that fails after this leaves no standby: a rollback starts that release afresh."""
    if not standby.running(d.paths, d.new):
        return
    paths, slot = d.paths, d.new
    # (what `onebox status` says if this deploy fails; a deploy that succeeds says anew)
    standby.record(paths, False, f"the deploy of release {d.request.release_id} took its slot")

    def stop() -> None:
        switch.wait_unused(paths, slot)  # (the proxy's idle connections go first)
        run(["systemctl", "stop", paths.unit(slot)], check=False)

    # (a thread of its own: the pool's one worker runs Django's deployment check)
    d.freeing = threading.Thread(target=stop, name="free the idle slot", daemon=True)
    d.freeing.start()


def idle_slot_freed(d: Deploy) -> None:
    """Before the new release starts there: a stop that came after it would stop it."""
    if d.freeing is not None:
        d.freeing.join()


def settings(d: Deploy) -> str:
    if "django" not in d.skip:
        # Django's deployment check is a process of its own: it runs beside the settings
        # and collectstatic (reading the settings in it too was measured slower: two
        # cores, three Djangos).
        assert d.pool is not None
        d.checked = d.pool.submit(d.built.deploy_check)
    d.settings = d.built.settings()
    placed = ""
    if d.settings.get("SQLITE_IN_RELEASE"):
        placed = build.place_sqlite(d.built, Path(str(d.settings["SQLITE_IN_RELEASE"])))
        d.settings = d.built.settings()
    d.migrated["applied"] = d.pending
    return placed


def check_media(d: Deploy) -> str:
    return media_storage.check(d.built, d.request.media)


def collectstatic(d: Deploy) -> str:
    return build.collect_static(d.request, d.built, d.settings)


def check_deploy(d: Deploy) -> str:
    """Refuse a release that Django itself calls unfit for production (before anything
    about the database or the live site changes); see deploy_check.py."""
    assert d.checked is not None
    switches = d.request.switches
    shown = deploy_check.gate(d.checked.result(), switches, set(d.built.env))
    deploy_check.report(shown)
    return f"{len(shown)} note(s), none fatal" if shown else "no issues"


def migration_check(d: Deploy) -> str:
    breaking, detail = migrate.check_pending(d.built, d.request.allow_breaking)
    d.migrated["breaking"] = breaking
    if breaking:
        # Held from before the migration until the new release serves: old code never
        # meets the new schema.
        d.window.enter_context(restore.maintenance(d.paths))
        emit("log", text="breaking migration allowed: the maintenance page is up")
    return detail


def backup_before_migrating(d: Deploy) -> str:
    d.backup = restore.before_migrating(d.paths, d.pending)
    d.migrated["backup"] = d.backup["id"]
    return f"backup {d.backup['id']}; pending: {', '.join(d.pending)}"


def run_migrate(d: Deploy) -> bool:
    if nothing_to_migrate(d.settings):
        return False  # (a Django start saved: measured 0.45 s of a code-only deploy)
    engine = d.request.engine
    return migrate.migrate(d.paths, d.built, d.settings, engine, d.backup)


def nothing_to_migrate(settings: dict[str, Any]) -> bool:
    """The database answered, no migration is pending and no app makes its tables without
    migrations: `migrate` would apply nothing. (As Capistrano's conditionally_migrate,
    but asking Django, not the diff: post_migrate receivers ran when the migrations did.)"""
    answered = settings.get("APPLIED") is not None and settings.get("PENDING") is not None
    return answered and not settings["PENDING"] and not settings.get("UNMIGRATED", ["?"])


def freeze(d: Deploy) -> None:
    d.site = build.site_config(d.request, d.settings)
    build.freeze(d.release_dir, d.paths.app, d.request, d.site, d.settings, d.migrated)
    background.write_release(
        d.release_dir, d.paths.app, d.request.background, build.workdir(d.request)
    )
    if d.built.references:
        env_refs.write(d.release_dir, d.built.references)
    build.bridge_static(d.paths, d.release_dir, d.request.keep)


def units(d: Deploy) -> bool:
    return ensure_units(d.paths, d.request.files)  # [app] workers or wsgi may have changed


def discard_release(d: Deploy) -> None:
    discard(d.paths, d.release_dir)
    prune_venvs(d.paths)  # a failed release's new virtualenv goes with it


def hook_failed(d: Deploy, command: str, error: AgentError) -> None:
    d.hooks_failed.append(command)


def prune_releases(d: Deploy) -> None:
    d.pruned = prune(d.paths, d.request.keep)


STEPS: list[Step[Deploy] | Each[Deploy]] = [
    Step("redis", redis, when=lambda d: bool(d.request.redis)),
    Step("unpack release", unpack, undo=discard_release, plan=plan.unpack),
    Step("build packages", build_packages, plan=plan.build_packages, idempotent=True),
    Step("virtualenv", virtualenv, plan=plan.virtualenv, idempotent=True),
    Each("build", lambda d: d.request.build, shell("build")),
    Step("free the idle slot", free_idle_slot, quiet=True),
    Step("settings", settings, plan=plan.settings),
    Step("media storage", check_media, when=lambda d: d.request.media["storage"] == "s3"),
    Step("collectstatic", collectstatic, plan=plan.collectstatic),
    Step("django check --deploy", check_deploy, when=lambda d: "django" not in d.skip),
    Each("before migrate", lambda d: d.request.before_migrate, shell("before-migrate")),
    Step("migration check", migration_check, when=lambda d: d.protect, plan=plan.migration_check),
    Step(
        "backup before migrating",
        backup_before_migrating,
        when=lambda d: d.protect,
        plan=plan.backup_before_migrating,
    ),
    Step("migrate", run_migrate, plan=plan.run_migrate, idempotent=True),
    Each("release", lambda d: d.request.release, shell("release")),
    Step("freeze release", freeze, plan=plan.freeze),
    Step("systemd units", units, plan=plan.units, idempotent=True),
    Step("idle slot freed", idle_slot_freed, quiet=True),
    *STARTUP,  # the release starts beside the live one (cutover.py)
    *TRAFFIC,  # traffic moves, probation, processes, the old slot stops
    # (if a breaking migration held the maintenance page up)
    Step("maintenance page off", lambda d: d.window.close(), quiet=True),
    # hooks once the release serves (a cache warm-up, a notification): traffic has
    # moved already, so a failing one is reported and changes nothing
    Each(
        "after switch",
        lambda d: d.request.after_switch,
        shell("after-switch"),
        tolerate=hook_failed,
    ),
    Step("prune", prune_releases, quiet=True, plan=plan.prune),
]


# A rolling deploy's part on each web host (request.hold): the release built and healthy
# beside the live one, the live site as it was; the client then switches host by host.
HELD = STEPS[: next(i for i, s in enumerate(STEPS) if s.name == "switch traffic")]


def deploy(request: DeployRequest, payload: Path) -> dict[str, Any]:
    paths = AppPaths(request.app)
    check_supported()
    if not paths.root.is_dir() or not paths.unit_template.is_file():
        raise AgentError(
            f"{paths.app} is not set up on this server",
            hint="run `onebox setup` first",
            code=ExitCode.CONFIG,
        )
    if request.dry_run:  # (no lock: it changes nothing)
        request.release_id = new_release_id(paths)
        return dry_run(begin(request, payload, paths))
    with roll_guard(paths.roll_lock, request.roll), deploy_lock(paths.lock, request.by, "deploy"):
        request.release_id = new_release_id(paths)
        ensure_secrets(paths)
        return _deploy(begin(request, payload, paths))


def begin(request: DeployRequest, payload: Path, paths: AppPaths) -> Deploy:
    """The checks before anything changes, and the context the steps share."""
    check_before(request, paths)
    d = Deploy(
        request=request,
        paths=paths,
        release_dir=paths.releases / request.release_id,
        payload=payload,
        secrets=read_env_file(paths.secrets),
        values=build.release_env(request, paths),
        migrated={"applied": [], "backup": None, "breaking": []},
        standby=request.standby,
        asgi=bool(request.serving.get("asgi")),
    )
    build.check_required(request.secrets, {**request.env, **d.secrets})
    return d


def dry_run(d: Deploy) -> dict[str, Any]:
    with plan.scratch(d):
        planned = plan_steps(STEPS, d)
    return {"dry_run": True, "release": d.request.release_id, "plan": [asdict(p) for p in planned]}


def _deploy(d: Deploy) -> dict[str, Any]:
    started = time.monotonic()
    request, paths = d.request, d.paths
    if "django" in d.skip:
        emit("log", text=f"django check --deploy skipped: {d.skip['django']}")
    with d.window, ThreadPoolExecutor(max_workers=1) as d.pool:
        run_steps(HELD if request.hold else STEPS, d)
    # (a held release serves nobody yet: its switch checks the site)
    checked = {} if request.hold else site_check.after_switch(paths, request)
    return {
        "held": request.hold,
        # what stands between visitors and the new release (maintenance mode, say)
        **checked,
        "hooks_failed": d.hooks_failed,
        "release": request.release_id,
        "slot": live_slot(paths),
        "pruned": d.pruned,
        "migrations": d.migrated,
        "background": d.moved,
        "seconds": round(time.monotonic() - started, 2),
    }


def check_before(request: DeployRequest, paths: AppPaths) -> None:
    """What must hold before anything changes: the database onebox.toml names is the
    one set up, and every schedule reads as a calendar."""
    settings = json.loads(paths.settings.read_text()) if paths.settings.is_file() else {}
    found = settings.get("database", {}).get("engine")
    engine = request.engine
    if found != engine:
        raise AgentError(
            f"onebox.toml says [database] engine = {engine!r}, but the server was set up for "
            f"{found or 'an older onebox'}",
            hint="run `onebox setup` first (it installs and connects the database)",
            code=ExitCode.CONFIG,
        )
    for name, entry in request.background.get("schedules", {}).items():
        check_calendar(entry["calendar"], f"[schedule] {name} when")

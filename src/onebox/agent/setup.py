"""`onebox setup` on the server: STEPS below, each one only the change that is needed.

Every step is idempotent: it reports "unchanged" when the server already was as asked.
With --dry-run each says what it would change instead (its plan, from facts), and
nothing runs. The steps themselves live beside what they manage (provision.py for the
app's own parts, hardening.py for the server's protections).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from . import (
    adoption,
    db_host,
    guard,
    hardening,
    isolation,
    public_files,
    redis_server,
    ssh_access,
    updates,
)
from .database import Engine, engine_for
from .lock import deploy_lock
from .paths import (
    CACHE,
    CADDY_DROPIN,
    CADDYFILE,
    ETC,
    SETUP_LOCK,
    UNIT_DIR,
    AppPaths,
)
from .plan import Change, command, file_change, files_change, missing_dirs, package_changes
from .provision import (
    BASE_PACKAGES,
    CADDY_DROPIN_TEXT,
    SECRETS_HEADER,
    agent_files,
    check_calendar,
    check_supported,
    ensure_app_user,
    ensure_backups,
    ensure_balancer,
    ensure_caddy,
    ensure_database,
    ensure_layout,
    ensure_packages,
    ensure_secrets,
    ensure_timers,
    ensure_units,
    ensure_uv,
    install_agent,
    timer_commands,
    timer_files,
    uv_is,
)
from .requests import SetupRequest
from .steps import Step, plan_steps, run_steps
from .system import (
    format_env_file,
    group_members,
    read_env_file,
    user_exists,
    write_file,
)


@dataclass(kw_only=True)
class Setup:
    request: SetupRequest
    paths: AppPaths
    db: Engine
    debian: str
    packages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    guarded: list[str] = field(default_factory=list)  # to confirm over a new connection
    changed: list[str] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, Any]:
        """What the server keeps of [database] and [backup], for its scheduled jobs, and
        what answers on ports 80 and 443 (apache_site.front)."""
        r = self.request
        return {"database": r.database, "backup": r.backup, "proxy": r.proxy, "apache": r.apache}

    @property
    def apache(self) -> bool:
        return self.request.proxy == "apache"

    @property
    def proxy_user(self) -> str:
        """Who reads the app's sockets and static files: the proxy's user."""
        return "www-data" if self.apache else "caddy"

    @property
    def adopted(self) -> bool:
        """A site Apache + mod_wsgi served, taken over (`onebox adopt`)."""
        return self.apache and bool(self.request.apache.get("code"))

    @property
    def wants_redis(self) -> bool:  # ([services] redis taken out: its user is removed)
        return bool(self.request.redis) or redis_server.app_conf(self.paths.app).exists()


def changed(name: str, action: Any) -> Any:
    """An action whose bool result is also noted in the setup's list of changes."""

    def run_it(s: Setup) -> bool:
        result = bool(action(s))
        if result:
            s.changed.append(name)
        return result

    return run_it


# What each step would change (a dry run).


def plan_packages(s: Setup) -> list[Change]:
    changes = package_changes(s.packages)
    if "updates" not in s.request.security.get("skip", {}):
        waiting = updates.pending_security_updates()
        changes += [Change("package", name, "security update") for name in waiting]
    return changes


def plan_uv(s: Setup) -> list[Change]:
    if uv_is(s.request.uv_version):
        return []
    return [command(["pip", "install", f"uv=={s.request.uv_version}"])]


def plan_app_user(s: Setup) -> list[Change]:
    app = s.paths.app
    changes = [] if user_exists(app) else [Change("user", app, "system user, no login")]
    if s.proxy_user not in (group_members(app) if user_exists(app) else []):
        changes.append(command(["usermod", "--append", "--groups", app, s.proxy_user]))
    return changes


def plan_directories(s: Setup) -> list[Change]:
    paths = s.paths
    folders = [paths.root, paths.releases, paths.venvs, paths.slots, paths.shared, paths.media]
    folders += [paths.db, paths.state, ETC, CACHE]
    old = [Change("directory", f"remove {p}") for p in isolation.old_staging(paths) if p.is_dir()]
    return missing_dirs(folders) + old


def plan_shared_mount(s: Setup) -> list[Change]:
    unit = public_files.mount_unit(s.paths)
    text = public_files.MOUNT_UNIT.format(shared=s.paths.shared)
    changes = file_change(UNIT_DIR / unit, text)
    if not public_files.nosymfollow(s.paths, "self"):
        changes.append(command(["systemctl", "start", unit]))
    return changes


def plan_units(s: Setup) -> list[Change]:
    files, paths = s.request.files, s.paths
    return files_change({paths.unit_template: files["unit"], paths.tmpfiles: files["tmpfiles"]})


def plan_caddy(s: Setup) -> list[Change]:
    changes = files_change(
        {CADDY_DROPIN: CADDY_DROPIN_TEXT, CADDYFILE: s.request.files["caddyfile"]}
    )
    from . import site_check  # (imports switch, which needs provision: late)

    if not site_check.caddy_active() or not public_files.caddy_sees_mount(s.paths):
        changes.append(command(["systemctl", "restart", "caddy"]))
    return changes


def plan_secrets(s: Setup) -> list[Change]:
    values = read_env_file(s.paths.secrets)
    missing = [k for k in ("SECRET_KEY", "DJANGO_SECRET_KEY") if k not in values]
    return [Change("file", str(s.paths.secrets), f"{', '.join(missing)} made")] if missing else []


def plan_agent(s: Setup) -> list[Change]:
    files, stale = agent_files()
    changes = [Change("file", c.target) for c in files_change(files, mode=None)]  # (no diffs)
    return changes + [Change("file", f"remove {p}") for p in stale]


def plan_backups(s: Setup) -> list[Change]:
    paths = s.paths
    changes = missing_dirs([paths.backups, paths.backup_tmp])
    if not paths.backup_key.is_file():
        changes.append(Change("file", str(paths.backup_key), "a new backup key"))
    changes += file_change(paths.settings, json.dumps(s.settings, indent=2) + "\n", mode=0o600)
    if not (paths.backup_repo / "config").is_file():
        changes.append(Change("directory", str(paths.backup_repo), "a new restic repository"))
    return changes


def plan_timers(s: Setup) -> list[Change]:
    changes = files_change(timer_files(s.paths, s.request.files))
    argvs = timer_commands(s.paths, s.request.backup, bool(changes))
    return changes + [command(argv) for argv in argvs]


def step(name: str, action: Any, plan: Any = None, when: Any = None) -> Step[Setup]:
    return Step(name, changed(name, action), plan=plan, when=when, idempotent=True)


def steps(s: Setup) -> list[Step[Setup]]:
    """Setup's steps, in order (the hardening ones follow [security])."""
    r, paths = s.request, s.paths
    return [
        step("packages", lambda s: ensure_packages(s.packages, r.security, s.notes), plan_packages),
        step("uv", lambda s: ensure_uv(r.uv_version), plan_uv),
        step("app user", lambda s: ensure_app_user(paths.app, s.proxy_user), plan_app_user),
        step("directories", lambda s: ensure_layout(paths), plan_directories),
        step(
            "shared folder, links not followed",
            lambda s: public_files.ensure_shared_mount(paths),
            plan_shared_mount,
        ),
        step("systemd units", lambda s: ensure_units(paths, r.files), plan_units),
        step(
            "caddy",
            lambda s: ensure_caddy(paths, r.files["caddyfile"]),
            plan_caddy,
            when=lambda s: not s.apache,
        ),
        step("secrets file", lambda s: ensure_secrets(paths), plan_secrets),
        step(
            "the database host's certificate and password",
            database_access,
            when=lambda s: bool(r.database_ca),
        ),
        step(
            "the adopted site's database password, into the secrets",
            lambda s: adoption.take_password(paths, r.apache),
            when=lambda s: s.adopted,
        ),
        step(f"database ({s.db.name})", lambda s: ensure_database(paths, s.db)),  # (no plan)
        step("redis", lambda s: redis_server.ensure(paths, r.redis), when=lambda s: s.wants_redis),
        step("onebox agent", lambda s: install_agent(), plan_agent),
        step("backups", lambda s: ensure_backups(paths, s.settings, s.notes), plan_backups),
        step(
            "the adopted site's uploads, copied into shared/media",
            lambda s: adoption.copy_media(paths, r.apache),
            when=lambda s: s.adopted,
        ),
        step(
            "first backup of the adopted site",
            lambda s: adoption.first_backup(paths, s.settings),
            when=lambda s: s.adopted,
        ),
        step("backup timers", lambda s: ensure_timers(paths, r.files, r.backup), plan_timers),
        *(
            step(name, action, plan)
            for name, action, plan in hardening.steps(
                paths.app, r.security, r.login, s.debian, s.notes, s.guarded
            )
        ),
    ]


def database_host_steps(s: Setup) -> list[Step[Setup]]:
    """A database host's steps ([servers] db): no app, no web server; the hardening
    with a firewall that opens the database's port to the web hosts alone."""
    r = s.request
    security = {**r.security, "web": False, "allow": {str(db_host.PORT): r.clients}}
    serve = step(
        "database host (PostgreSQL over TLS, for the app hosts)",
        lambda s: db_host.ensure(s.paths.app, r.address, r.clients),
    )
    return host_steps(s, serve, security)


def balancer_steps(s: Setup) -> list[Step[Setup]]:
    """A load balancer's steps ([servers] lb): Caddy with its Caddyfile, the hardening."""
    r = s.request
    serve = step("load balancer (Caddy)", lambda s: ensure_balancer(r.files["caddyfile"]))
    return host_steps(s, serve, r.security)


def host_steps(s: Setup, serve: Step[Setup], security: dict[str, Any]) -> list[Step[Setup]]:
    """A host without the app: its packages, what it serves, the agent, the hardening."""
    r = s.request
    return [
        step("packages", lambda s: ensure_packages(s.packages, r.security, s.notes), plan_packages),
        serve,
        step("onebox agent", lambda s: install_agent(), plan_agent),
        *(
            step(name, action, plan)
            for name, action, plan in hardening.steps(
                s.paths.app, security, r.login, s.debian, s.notes, s.guarded
            )
        ),
    ]


def database_access(s: Setup) -> bool:
    """An app host of a database host: its CA's certificate (the app checks the server's
    against it), and the app's password in the secrets."""
    paths, r = s.paths, s.request
    changed = write_file(paths.database_ca, r.database_ca, mode=0o644)
    values = read_env_file(paths.secrets)
    if values.get("DATABASE_PASSWORD") != r.database_password:
        values["DATABASE_PASSWORD"] = r.database_password
        write_file(paths.secrets, format_env_file(values, SECRETS_HEADER), mode=0o600)
        changed = True
    return changed


def setup(request: SetupRequest) -> dict[str, Any]:
    """One setup at a time per server (two would meet on apt's lock, or in sshd's config);
    the second is refused with exit 7, naming the first. A dry run takes no lock."""
    s = begin(request)
    roles = {"db": database_host_steps, "lb": balancer_steps, "app": steps}
    listed = roles[request.role](s)
    if request.dry_run:
        return {"dry_run": True, "plan": [asdict(p) for p in plan_steps(listed, s)]}
    with deploy_lock(SETUP_LOCK, request.by, f"setup of {request.app}"):
        run_steps(listed, s)
    locked = "ssh" not in request.security.get("skip", {}) and ssh_access.locked_down()
    # An undo still armed by an earlier setup that never got its confirmation (its
    # client was killed): confirmed over this run's new connection, or it fires later.
    waiting = [name for name in guard.armed() if name not in s.guarded]
    if waiting:
        s.notes.append(f"unconfirmed changes of an earlier setup: {', '.join(waiting)}")
    confirm = s.guarded + waiting
    return {"changed": s.changed, "notes": s.notes, "confirm": confirm, "locked_down": locked}


def begin(request: SetupRequest) -> Setup:
    """The checks made before anything changes (a bad schedule must not stop setup
    half-way, or replace a good timer), and the context of the steps."""
    found = check_supported()
    paths = AppPaths(request.app)
    for key in ("schedule", "verify"):
        check_calendar(request.backup[key], f"[backup] {key}")
    db = engine_for(paths.app, request.database, read_env_file(paths.secrets))
    base = [p for p in BASE_PACKAGES if p != "caddy" or request.proxy != "apache"]
    packages = base + db.packages + (["redis-server"] if request.redis else [])
    if request.role == "db":  # (the database server itself, and openssl for its CA)
        packages = ["postgresql", "postgresql-client", "openssl", "ca-certificates"]
    elif request.role == "lb":
        packages = ["caddy", "ca-certificates", "curl"]
    packages += hardening.packages(request.security)
    return Setup(
        request=request, paths=paths, db=db, debian=str(found["os_version"]), packages=packages
    )

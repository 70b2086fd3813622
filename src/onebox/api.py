"""The library API behind the CLI: each function is one onebox command.

Functions take a loaded Project and a `Reporter` (progress and notices) and return
plain data, which the CLI prints as text or JSON.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from uv import find_uv_bin

from onebox import audit as outside
from onebox import background, bundle, no_deploy_user, remote, sandbox
from onebox.agent.paths import AppPaths
from onebox.agent.requests import (
    AuditRequest,
    BackupKeyRequest,
    BackupRequest,
    BackupsRequest,
    CancelRequest,
    ConfirmRequest,
    DeployRequest,
    EnvListRequest,
    EnvSetRequest,
    EnvUnsetRequest,
    FactsRequest,
    HistoryRequest,
    MaintenanceRequest,
    ManageArgsRequest,
    ReleasesRequest,
    Request,
    RestoreRequest,
    RollbackRequest,
    SetupRequest,
    StatusRequest,
    VerifyRequest,
)
from onebox.config import Project, set_server_user
from onebox.detect import python_requirement, settings_switches
from onebox.errors import (
    ConfigError,
    ConnectionFailed,
    OneboxError,
    RemoteStepFailed,
    UnsupportedError,
)
from onebox.lock import lock
from onebox.python_support import check_django_python, check_requires_python
from onebox.release_contents import check_settings_shipped, explain_missing_module
from onebox.templating import render
from onebox.transport import DEPLOY_USER, SSH, Target

LAN_SUFFIXES = (".lan", ".local", ".internal", ".home.arpa", ".localhost", ".test")


Result = dict[str, Any]  # JSON data from the agent, returned to the CLI as it is


class Reporter(Protocol):
    def event(self, event: dict[str, object]) -> None: ...
    def notice(self, message: str) -> None: ...


@dataclass(frozen=True)
class Server:
    ssh: SSH
    address: str  # what browsers use: the domain, or the server's address


def resolve_target(spec: str, project: Project | None = None) -> Target:
    """--host / [server] host -> where to connect. `sandbox:NAME` is a practice server."""
    if not spec:
        raise ConfigError("no server given", hint="set [server] host in onebox.toml or pass --host")
    if spec.startswith("sandbox:"):
        target = sandbox.load(spec.removeprefix("sandbox:")).target()
        user = project.config.server.user if project else None
        return replace(target, user=user, fallback_user=target.user) if user else target
    user, _, host = spec.rpartition("@")
    port = None
    match = re.fullmatch(r"(.+):(\d+)", host)
    if match and not host.startswith("["):
        host, port = match.group(1), int(match.group(2))
    server = project.config.server if project else None
    return Target(
        host=host,
        user=user or (server.user if server else None),
        port=port or (server.port if server else None),
        label=spec,
    )


@contextmanager
def connect(project: Project, host: str | None, reporter: Reporter) -> Iterator[Server]:
    target = resolve_target(host or project.config.server.host, project)
    ssh = SSH(target, on_notice=reporter.notice)
    try:
        address = project.config.server.domain or ssh.hostname
        yield Server(ssh=ssh, address=address)
    finally:
        ssh.close()


def tls_internal(project: Project, address: str) -> bool:
    tls = project.config.server.tls
    if tls != "auto":
        return tls == "internal"
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return "." not in address or address.endswith(LAN_SUFFIXES)


def uv_version() -> str:
    out = subprocess.run([find_uv_bin(), "--version"], capture_output=True, text=True).stdout
    return out.split()[1]


def unit_context(project: Project, address: str) -> dict[str, object]:
    """What every template of the app's units and sites is rendered with."""
    cfg = project.config
    return {
        "app": cfg.app.name,
        **AppPaths(cfg.app.name).template_context(),
        "wsgi": cfg.app.wsgi,
        "asgi": cfg.app.asgi,
        "workers": cfg.app.workers,
        "drain": cfg.deploy.drain,
        "workdir": str(Path(cfg.app.manage).parent).strip("."),
        "address": address,
        "tls_internal": tls_internal(project, address),
    }


def rendered_files(project: Project, address: str) -> dict[str, str]:
    cfg = project.config
    context = unit_context(project, address)
    two_years, one_year = 63072000, 31536000
    default_hsts = one_year if context["tls_internal"] else two_years
    context["hsts_max_age"] = cfg.security.hsts_max_age or default_hsts
    names = {
        "unit": "app.service.j2",
        "tmpfiles": "tmpfiles.conf.j2",
        "caddyfile": "Caddyfile.j2",
        "site": "site.caddy.j2",
    }
    files = {key: render(name, project.root, **context) for key, name in names.items()}
    backup = cfg.backup
    for job, calendar in (("backup", backup.schedule), ("verify", backup.verify)):
        offsite_path = backup.offsite if backup.offsite.startswith("/") else ""
        local_only = (offsite_path or not backup.offsite) and not cfg.database.url
        job_context = {
            **context,
            "job": job,
            "calendar": calendar,
            "local_only": bool(local_only),
            "offsite_path": offsite_path,
        }
        files[f"{job}_service"] = render("job.service.j2", project.root, **job_context)
        files[f"{job}_timer"] = render("job.timer.j2", project.root, **job_context)
    return files


def data_settings(project: Project) -> dict[str, dict[str, Any]]:
    """What the server keeps of [database] and [backup] (for its scheduled jobs)."""
    return {
        "database": project.config.database.model_dump(),
        "backup": project.config.backup.model_dump(),
    }


def facts(server: Server, reporter: Reporter) -> dict[str, object]:
    return remote.call(server.ssh, remote.pack(FactsRequest()), reporter.event)


def check_python(project: Project, found: dict[str, object]) -> str:
    """The Python the app runs on (major.minor), checked against what the project says
    it needs: [app] python, else its own requires-python."""
    cfg = project.config
    python = cfg.server.python or ".".join(str(found["python"]).split(".")[:2])
    wanted, where = cfg.app.python, "[app] python"
    if not wanted:
        wanted, where = python_requirement(project.root), "requires-python"
    check_requires_python(wanted, cfg.server.python or str(found["python"]), where)
    return python


def setup(project: Project, host: str | None, reporter: Reporter, dry_run: bool = False) -> Result:
    with connect(project, host, reporter) as server:
        request = SetupRequest(
            app=project.config.app.name,
            uv_version=uv_version(),
            files=rendered_files(project, server.address),
            security=project.config.security.model_dump(),
            redis=project.config.redis,
            database=project.config.database.model_dump(),
            backup=project.config.backup.model_dump(),
        )
        found = facts(server, reporter)
        check_python(project, found)
        request.dry_run = dry_run  # the server says what each step would change
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
        if dry_run:
            return {"host": server.ssh.target.name, "server": found, **result}
        lockdown = project.config.security.wants("ssh")
        if lockdown:
            # The deploy user exists now. Written before root login goes off, so that
            # onebox.toml never names a login the server refuses (and if the lockdown
            # is not confirmed, logging in as it falls back to root).
            no_deploy_user.forget(server.ssh.target)
            written = set_server_user(project.source, DEPLOY_USER)
        # New connections prove changes, or get root login turned off; a setup that
        # changed nothing on a server already locked down needs none.
        if result.get("confirm") or (lockdown and not result.get("locked_down")):
            confirm_access(project, server.ssh.target, result.get("confirm", []), reporter)
        if lockdown and written:
            reporter.notice(
                f"root and password logins are off on {server.ssh.target.name}: onebox "
                f'logs in as {DEPLOY_USER!r} from now on ([server] user = "{DEPLOY_USER}" '
                f"written to {project.source.name})"
            )
        return {"host": server.ssh.target.name, "server": found, **result}


def confirm_access(
    project: Project, target: Target, changes: list[str], reporter: Reporter
) -> None:
    """Brand-new SSH connections (no shared master) prove that setup's changes to the
    firewall and sshd let the user back in; only then does the server keep them. With
    lockdown, the connection is the deploy user's, and once it got in, root and password
    logins go off (confirmed by one more connection). If a connection fails, the server
    undoes the unconfirmed changes by itself within two minutes."""
    security = project.config.security
    lockdown = security.wants("ssh")
    login = replace(target, user=DEPLOY_USER) if lockdown else target
    request = ConfirmRequest(
        app=project.config.app.name,
        names=changes,
        lockdown=lockdown,
        confirm_within=security.confirm_within,
    )
    result = _confirm_once(login, request, changes or ["ssh"], reporter)
    again = result.get("confirm_again") or []
    if again:
        again_request = ConfirmRequest(app=project.config.app.name, names=again)
        _confirm_once(login, again_request, again, reporter)


def _confirm_once(
    target: Target, request: ConfirmRequest, changes: list[str], reporter: Reporter
) -> Result:
    name = f"a new SSH connection as {target.user or 'you'} gets in"
    reporter.event({"event": "step", "name": name, "status": "start"})
    started = time.monotonic()
    fresh = SSH(target, on_notice=reporter.notice, shared=False, login_fallback=False)
    try:
        result = remote.call(fresh, remote.pack(request), reporter.event)
    except ConnectionFailed as exc:
        raise ConnectionFailed(
            f"after setup changed the {' and '.join(changes)} settings, a new SSH connection "
            f"as {target.user or 'you'} to {target.name} failed: {exc.message}",
            hint="the server undoes those changes by itself within 2 minutes; then check "
            "[security] in onebox.toml (and how you reach SSH), and run `onebox setup` again",
            host=target.name,
            output=exc.output,
        ) from None
    seconds = round(time.monotonic() - started, 2)
    reporter.event({"event": "step", "name": name, "status": "changed", "seconds": seconds})
    return result


def deploy(
    project: Project,
    host: str | None,
    reporter: Reporter,
    dry_run: bool = False,
    allow_breaking: bool = False,
) -> Result:
    cfg = project.config
    for note in project.notes:
        reporter.notice(note)
    files = bundle.collect(project.root, cfg.build.exclude, cfg.build.include)
    check_settings_shipped(project.root, cfg.app.manage, cfg.app.settings, files)
    if files.secrets_left_out:
        reporter.notice(
            f"not shipped, as secret-looking: {', '.join(files.secrets_left_out)} (to ship "
            "one on purpose, list it in [build] include; secrets go in `onebox env set`)"
        )
    for path, size in files.large_untracked:
        reporter.notice(
            f"shipping {path} ({size // (1024 * 1024)} MB), which git does not track: if it "
            f'is not part of the app, add it to [build] exclude (exclude = ["{path}"])'
        )
    with connect(project, host, reporter) as server:
        found = facts(server, reporter)
        python = check_python(project, found)
        locked = lock(
            project.root, cfg.build.requirements, python, cfg.database.engine, bool(cfg.app.asgi)
        )
        if locked.note:
            reporter.notice(locked.note)
        check_django_python(locked.text, python)
        lock_hash = locked.hash
        if cfg.server.python:  # its own virtualenv, never one made with the system Python
            lock_hash = hashlib.sha256(f"{lock_hash}|python{python}".encode()).hexdigest()[:16]
        request = DeployRequest(
            app=cfg.app.name,
            commit=files.commit,
            address=server.address,
            settings=cfg.app.settings,
            manage=cfg.app.manage,
            health_path=cfg.app.health_check_path,
            health_pages=cfg.app.health_pages,
            collectstatic=cfg.build.collectstatic,
            build=cfg.deploy.build,
            before_migrate=cfg.deploy.before_migrate,
            release=cfg.deploy.release,
            after_switch=cfg.deploy.after_switch,
            env=cfg.env.vars,
            secrets=cfg.env.secrets,
            lock=locked.text,
            lock_hash=lock_hash,
            python=cfg.server.python,
            python_mirror=cfg.server.python_mirror,
            packages=[*locked.packages, *cfg.build.packages],
            files=rendered_files(project, server.address),
            engine=cfg.database.engine,
            keep=cfg.deploy.keep,
            probation=cfg.deploy.probation,
            security_skip=cfg.security.skip,
            switches=settings_switches(project.root, cfg.app.manage, cfg.app.settings),
            allow_breaking=allow_breaking,
            redis=cfg.redis,
            background=background.request_part(project, unit_context(project, server.address)),
        )
        request.dry_run = dry_run  # the server says what each step would change
        stream = remote.pack(request, project.root, files.files)
        try:
            result = remote.call(server.ssh, stream, reporter.event)
        except OneboxError as exc:
            left_out = explain_missing_module(project.root, cfg.app.manage, files, exc.output or "")
            if left_out:
                exc.hint = left_out
            raise
        return {
            "host": server.ssh.target.name,
            "url": f"https://{server.address}/",
            "commit": files.commit,
            "files": len(files.files),
            "bytes": files.size,
            **result,
        }


def env_set(
    project: Project,
    host: str | None,
    values: dict[str, str],
    reporter: Reporter,
    backup: bool = False,
) -> Result:
    return _simple(project, host, reporter, EnvSetRequest(values=values, backup=backup))


def env_unset(
    project: Project, host: str | None, keys: list[str], reporter: Reporter, backup: bool = False
) -> Result:
    return _simple(project, host, reporter, EnvUnsetRequest(keys=keys, backup=backup))


def env_list(
    project: Project,
    host: str | None,
    reporter: Reporter,
    reveal: bool = False,
    backup: bool = False,
) -> Result:
    return _simple(project, host, reporter, EnvListRequest(reveal=reveal, backup=backup))


def status(project: Project, host: str | None, reporter: Reporter) -> Result:
    with connect(project, host, reporter) as server:
        request = StatusRequest(
            app=project.config.app.name,
            address=server.address,
            health_path=project.config.app.health_check_path,
        )
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
        return {"host": server.ssh.target.name, "url": f"https://{server.address}/", **result}


def _simple(project: Project, host: str | None, reporter: Reporter, request: Request) -> Result:
    with connect(project, host, reporter) as server:
        request.app = project.config.app.name
        return remote.call(server.ssh, remote.pack(request), reporter.event)


def logs(
    project: Project,
    host: str | None,
    reporter: Reporter,
    follow: bool,
    lines: int,
    process: str | None = None,
) -> int:
    """The journal of gunicorn and Django, the processes, the schedules and the backup
    timers (or of the one process or schedule named)."""
    args = ["logs", project.config.app.name, str(lines), *(["follow"] if follow else [])]
    args += ["process", process] if process else []
    with connect(project, host, reporter) as server:
        return server.ssh.interactive(server.ssh.agent_command(args))


def manage(project: Project, host: str | None, reporter: Reporter, args: list[str]) -> int:
    """manage.py in the live release, as the app user, with its environment loaded by systemd."""
    return _in_release(project, host, reporter, "manage", args)


def run(project: Project, host: str | None, reporter: Reporter, args: list[str]) -> int:
    """Any command in the live release (`python manage.py check`, `celery inspect ping`),
    as manage.py runs: its output streamed, its exit status returned."""
    return _in_release(project, host, reporter, "run", args)


def _in_release(
    project: Project, host: str | None, reporter: Reporter, kind: str, args: list[str]
) -> int:
    app = project.config.app.name
    with connect(project, host, reporter) as server:
        # The arguments go first inside an agent request (stdin), never on a command line:
        # they may hold a password (see agent/manage_args.py).
        request = ManageArgsRequest(app=app, args=args)
        token = remote.call(server.ssh, remote.pack(request), reporter.event)["token"]
        command = [kind, app, project.config.app.manage, "--args-from", str(token)]
        return server.ssh.interactive(server.ssh.agent_command(command))


def caddy_root_ca(project: Project, host: str | None, reporter: Reporter) -> str:
    """The root certificate of Caddy's internal CA, for clients to trust the site."""
    with connect(project, host, reporter) as server:
        result = server.ssh.run(server.ssh.agent_command(["ca"]), check=False)
        if result.returncode != 0:
            raise RemoteStepFailed(
                f"{server.ssh.target.name} has no internal CA yet",
                host=server.ssh.target.name,
                output=result.stderr.decode(errors="replace")[-1000:],
                hint="Caddy creates it when it first serves a site by IP address or LAN name: "
                "run `onebox setup` and `onebox deploy` first (a public domain needs no CA)",
            )
        return result.stdout.decode()


def backup(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, BackupRequest())


def backups(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, BackupsRequest())


def restore(
    project: Project, host: str | None, backup_id: str | None, reporter: Reporter
) -> Result:
    return _simple(project, host, reporter, RestoreRequest(id=backup_id))


def verify(project: Project, host: str | None, backup_id: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, VerifyRequest(id=backup_id))


def backup_key(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, BackupKeyRequest())


def maintenance(project: Project, host: str | None, on: bool, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, MaintenanceRequest(on=on))


def cancel(project: Project, host: str | None, reporter: Reporter) -> Result:
    """Stop the app's deploy in progress before it moves traffic (see agent/cancel.py)."""
    return _simple(project, host, reporter, CancelRequest())


def db_shell(project: Project, host: str | None, reporter: Reporter) -> int:
    """The database's own shell on the server (sqlite3, mariadb, psql), as its admin."""
    database = project.config.database
    if database.url:
        raise UnsupportedError(
            "the database is on an external server: use its own client or console",
            hint=f"its address is in [database] url ({database.url})",
        )
    with connect(project, host, reporter) as server:
        command = server.ssh.agent_command(["dbshell", project.config.app.name])
        return server.ssh.interactive(command)


def db_pull(
    project: Project, host: str | None, backup_id: str | None, target: Path, reporter: Reporter
) -> Result:
    """Download a backup's database dump (the latest by default) for local debugging."""
    with connect(project, host, reporter) as server:
        request = BackupsRequest(app=project.config.app.name)
        found = remote.call(server.ssh, remote.pack(request), reporter.event)
        complete = [b for b in found["backups"] if "server" in b["where"]]
        if backup_id:
            complete = [b for b in complete if b["id"] == backup_id]
        if not complete:
            raise ConfigError(
                f"no backup {backup_id!r} on the server" if backup_id else "there is no backup yet",
                hint="`onebox backups` lists them; `onebox backup` makes one",
            )
        chosen = complete[-1]
        # The server's onebox-agent knows where the repository and its key are.
        argv = server.ssh.agent_command(
            ["dump", project.config.app.name, str(chosen["parts"]["db"]), str(chosen["dump_path"])]
        )
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as handle:  # streamed: a dump can be larger than memory
            process = server.ssh.popen(argv, stdout=handle, stderr=subprocess.PIPE)
            _, error = process.communicate()
        if process.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RemoteStepFailed(
                f"downloading backup {chosen['id']} failed",
                host=server.ssh.target.name,
                output=error.decode(errors="replace")[-2000:],
            )
        partial.replace(target)
        return {
            "id": chosen["id"],
            "engine": chosen["engine"],
            "file": str(target),
            "bytes": target.stat().st_size,
        }


def audit(
    project: Project,
    host: str | None,
    reporter: Reporter,
    lynis: bool = False,
    all_ports: bool = False,
) -> Result:
    """The server's protections checked as they are now, from inside and from here."""
    cfg = project.config
    with connect(project, host, reporter) as server:
        request = AuditRequest(
            app=cfg.app.name,
            manage=cfg.app.manage,
            security=cfg.security.model_dump(),
            lynis=lynis,
        )
        inside = remote.call(server.ssh, remote.pack(request), reporter.event)
        address = server.ssh.hostname
    checks = list(inside["checks"])
    if cfg.security.wants("firewall"):
        allowed = {*inside["ssh_ports"], 80, 443, *cfg.security.open_ports}
        checks.append(outside.check_ports(address, allowed, all_ports))
    checks += outside.check_site(address, cfg.server.domain or address)
    counted = [c for c in checks if c["status"] in ("pass", "fail")]
    passed = sum(c["status"] == "pass" for c in counted)
    return {
        "host": server.ssh.target.name,
        "checks": checks,
        "score": round(100 * passed / len(counted)) if counted else 100,
        "failed": [c["name"] for c in checks if c["status"] == "fail"],
    }


def history(project: Project, host: str | None, reporter: Reporter, lines: int = 30) -> Result:
    """The server's audit trail of operations on this app, oldest first."""
    return _simple(project, host, reporter, HistoryRequest(lines=lines))


def releases(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, ReleasesRequest())


def rollback(
    project: Project,
    host: str | None,
    release: str | None,
    force: bool,
    reporter: Reporter,
    restore_db: bool = False,
) -> Result:
    """Back to the previous (or the named) release, through the same zero-downtime switch;
    with restore_db, the database first goes back to the backup taken before the newer
    migrations (behind the maintenance page)."""
    cfg = project.config
    with connect(project, host, reporter) as server:
        request = RollbackRequest(
            app=cfg.app.name,
            release=release,
            force=force,
            restore_db=restore_db,
            address=server.address,
            health_path=cfg.app.health_check_path,
            manage=cfg.app.manage,
        )
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
        return {"host": server.ssh.target.name, "url": f"https://{server.address}/", **result}

"""`onebox setup`: the request, then the new SSH connections that confirm its
changes to sshd and the firewall (and turn root login off).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace

from onebox import hosts, no_deploy_user, remote
from onebox.agent.paths import BALANCED_PORT, CADDYFILE
from onebox.agent.requests import (
    ConfirmRequest,
    SetupRequest,
)
from onebox.api.server import (
    Reporter,
    Result,
    Server,
    balancer_addresses,
    check_python,
    connect,
    facts,
    front_settings,
    rendered_files,
    tls_internal,
    uv_version,
)
from onebox.config import Project, set_server_user
from onebox.errors import (
    ConfigError,
    ConnectionFailed,
    RemoteStepFailed,
)
from onebox.templating import render
from onebox.transport import DEPLOY_USER, SSH, Target


def setup(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
    dry_run: bool = False,
    role: str | None = None,
) -> Result:
    """Every host of the project, by its role: the database host first, then each web
    host and worker host, then the load balancer; or the one --host names, or those of
    --role."""
    cfg = project.config
    db, lb = cfg.servers.db, cfg.servers.managed_lb
    every = ([db] if db else []) + cfg.app_hosts + ([lb] if lb else [])
    chosen = [host] if host else [h for h in every if role in (None, role_of(project, h))]
    if not chosen:
        raise ConfigError(
            f"no host has the role {role!r} in onebox.toml",
            hint="[servers] names the hosts of each role: web, worker, lb and db",
        )
    several = host is None and len(every) > 1
    access: dict[str, str] | None = None
    results: list[Result] = []
    for name in chosen:
        if several:
            reporter.notice(f"setting up {name} ({role_of(project, name)})")
        if db and name == db:
            result, access = _setup_host(project, db, reporter, dry_run, database_host_request)
        elif lb and name == lb:
            result, _ = _setup_host(project, lb, reporter, dry_run, balancer_request)
        else:
            if db and access is None and not dry_run:
                access = database_access(project, reporter)
            first = name == cfg.web_hosts[0]
            worker = name in cfg.servers.worker
            make = web_request(access, first, worker)
            result, _ = _setup_host(project, name, reporter, dry_run, make)
        results.append({**result, "role": role_of(project, name)})
    if not several:
        return results[0]
    # (the first web host's at the top, if one was set up)
    web = next((r for r in results if r["role"] == "web"), results[0])
    return {**web, "hosts": results}


def role_of(project: Project, host: str) -> str:
    servers = project.config.servers
    if host in servers.worker:
        return "worker"
    return "db" if host == servers.db else "lb" if host == servers.managed_lb else "web"


def web_request(
    access: dict[str, str] | None, first: bool = True, worker: bool = False
) -> Callable[[Project, Server], SetupRequest]:
    """A web (or worker) host's setup; the database and media are backed up from the
    first web host alone (the others' timers off: one database, backed up once)."""

    def make(project: Project, server: Server) -> SetupRequest:
        if not first:
            backup = project.config.backup.model_copy(update={"schedule": "off", "verify": "off"})
            config = project.config.model_copy(update={"backup": backup})
            project = project.model_copy(update={"config": config})
        request = app_setup_request(project, server, worker=worker)
        if access:
            request.database_ca, request.database_password = access["ca"], access["password"]
        return request

    return make


def app_setup_request(project: Project, server: Server, worker: bool = False) -> SetupRequest:
    security = project.config.security.model_dump()
    balancer = balancer_addresses(project)
    if worker:  # (no web traffic: Caddy answers the host's own checks alone, behind it)
        security["web"] = False
    elif balancer:  # (the load balancer's way in: its site on the web host, plain HTTP)
        security["allow"] = {str(BALANCED_PORT): balancer}
    return SetupRequest(
        app=project.config.app.name,
        uv_version=uv_version(),
        files=rendered_files(project, server.address, host=server.ssh.target.name),
        security=security,
        redis=project.config.redis,
        database=project.config.database.model_dump(),
        backup=project.config.backup.model_dump(),
        **front_settings(project),
    )


def balancer_request(project: Project, server: Server) -> SetupRequest:
    """[servers] lb: Caddy in front of the web hosts, HTTPS for the site's address."""
    cfg = project.config
    upstreams = [ip for host in cfg.web_hosts for ip in hosts.ip_addresses(host)]
    caddyfile = render(
        "balancer.caddy.j2",
        project.root,
        app=cfg.app.name,
        address=server.address,
        tls_internal=tls_internal(project, server.address),
        upstreams=[f"{'[' + ip + ']' if ':' in ip else ip}:{BALANCED_PORT}" for ip in upstreams],
        health_path=cfg.app.health_check_path,
        caddyfile=str(CADDYFILE),
    )
    return SetupRequest(
        app=cfg.app.name,
        uv_version=uv_version(),
        files={"caddyfile": caddyfile},
        security=cfg.security.model_dump(),
        redis=None,
        database={"engine": "sqlite", "url": ""},  # (none on it)
        backup=cfg.backup.model_dump(),
        proxy="caddy",
        apache={},
        role="lb",
    )


def database_host_request(project: Project, server: Server) -> SetupRequest:
    """[servers] db: PostgreSQL for the web hosts, reached over TLS at the address the
    app's database URL names, from the web hosts' addresses alone."""
    cfg = project.config
    return SetupRequest(
        app=cfg.app.name,
        uv_version=uv_version(),
        files={},
        security=cfg.security.model_dump(),
        redis=None,
        database={**cfg.database.model_dump(), "url": ""},  # (its own, local to it)
        backup=cfg.backup.model_dump(),
        proxy="caddy",
        apache={},
        role="db",
        address=hosts.address_of(cfg.servers.db),
        clients=sorted({ip for host in cfg.app_hosts for ip in hosts.ip_addresses(host)}),
    )


def database_access(project: Project, reporter: Reporter) -> dict[str, str]:
    """The database host's CA certificate and the app's password (into memory only)."""
    with connect(project, project.config.servers.db, reporter) as server:
        return _read_access(project, server)


def _read_access(project: Project, server: Server) -> dict[str, str]:
    app = project.config.app.name
    answer = server.ssh.run(server.ssh.agent_command(["db-access", app]), check=False)
    said = answer.stderr.decode(errors="replace")
    if answer.returncode == 0:
        return dict(json.loads(answer.stdout))
    if "no database of" in said:  # (the agent's own refusal: commands.db_access)
        raise RemoteStepFailed(
            f"the database host {server.ssh.target.name} has no database for {app} yet",
            host=server.ssh.target.name,
            hint="run `onebox setup` without --host: it sets up the database host first",
        )
    raise RemoteStepFailed(
        f"reading the database's password on {server.ssh.target.name} failed "
        f"(exit {answer.returncode})",
        host=server.ssh.target.name,
        output=said[-2000:],
        hint="its onebox agent may be older than this onebox: `onebox setup --host "
        f"{server.ssh.target.name}` installs it again",
    )


def _setup_host(
    project: Project,
    host: str | None,
    reporter: Reporter,
    dry_run: bool,
    make_request: Callable[[Project, Server], SetupRequest],
) -> tuple[Result, dict[str, str] | None]:
    """One host's setup, then the new connections that confirm its changes; a database
    host's access is read before they turn root's login off."""
    with connect(project, host, reporter) as server:
        request = make_request(project, server)
        found = facts(server, reporter)
        if request.role == "app":
            check_python(project, found)
        request.dry_run = dry_run  # the server says what each step would change
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
        if dry_run:
            return {"host": server.ssh.target.name, "server": found, **result}, None
        access = _read_access(project, server) if request.role == "db" else None
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
        return {"host": server.ssh.target.name, "server": found, **result}, access


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

"""The running app: its secrets, status, logs, manage.py and other commands in its
release, the CA, the audit and the history.
"""

from __future__ import annotations

from onebox import remote
from onebox.agent.requests import (
    AuditRequest,
    EnvListRequest,
    EnvSetRequest,
    EnvUnsetRequest,
    HistoryRequest,
    ManageArgsRequest,
    Request,
    StatusRequest,
)
from onebox.api.server import (
    Reporter,
    Result,
    _simple,
    connect,
)
from onebox.config import Project
from onebox.errors import (
    OneboxError,
    RemoteStepFailed,
)


def env_set(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
    values: dict[str, str],
    backup: bool = False,
) -> Result:
    request = EnvSetRequest(values=values, backup=backup)
    return _on_app_hosts(project, host, reporter, request, every=not backup)


def env_unset(
    project: Project, host: str | None, reporter: Reporter, *, keys: list[str], backup: bool = False
) -> Result:
    request = EnvUnsetRequest(keys=keys, backup=backup)
    return _on_app_hosts(project, host, reporter, request, every=not backup)


def _on_app_hosts(
    project: Project, host: str | None, reporter: Reporter, request: Request, every: bool
) -> Result:
    """The app's environment is each app host's own: without --host, a change goes to
    every web and worker host (the backups' keys only to the first, which runs them)."""
    names = project.config.app_hosts
    if host is not None or not every or len(names) == 1:
        return _simple(project, host, reporter, request)
    done: list[Result] = []
    for name in names:
        try:
            done.append({"host": name, **_simple(project, name, reporter, request)})
        except OneboxError as exc:
            if done:
                exc.message += f" (changed on {', '.join(r['host'] for r in done)} already)"
                exc.hint = f"run it again once {name} answers: the hosts must agree"
            raise
    return {**done[0], "hosts": done}


def env_list(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
    reveal: bool = False,
    backup: bool = False,
) -> Result:
    return _simple(project, host, reporter, EnvListRequest(reveal=reveal, backup=backup))


def status(project: Project, host: str | None, reporter: Reporter) -> Result:
    """The server's state; with several app hosts (and no --host), each one's, and
    whether they all serve the same code."""
    names = project.config.app_hosts
    if host is not None or len(names) == 1:
        return host_status(project, host, reporter)
    found: list[Result] = []
    for name in names:
        try:
            found.append(host_status(project, name, reporter))
        except OneboxError as exc:
            found.append({"host": name, "unreachable": exc.message, "problems": [exc.message]})
    problems = [f"{r['host']}: {p}" for r in found for p in r.get("problems") or []]
    serving = {r["host"]: code_of(r) for r in found if "unreachable" not in r}
    if len(set(serving.values())) > 1:
        which = ", ".join(f"{h} ({c})" for h, c in serving.items())
        problems.append(
            f"the web hosts serve different code: {which}; `onebox deploy` brings them level"
        )
    return {**found[0], "hosts": found, "problems": problems}


def code_of(status: Result) -> str:
    """What a host serves, comparable across hosts (each names its releases by its own
    clock): the commit and the lock of its live release."""
    release = status.get("release") or {}
    commit = str(release.get("commit") or "no commit")[:12]
    return f"commit {commit}, lock {release.get('lock_hash', '?')}" if release else "nothing"


def host_status(project: Project, host: str | None, reporter: Reporter) -> Result:
    with connect(project, host, reporter) as server:
        request = StatusRequest(
            app=project.config.app.name,
            address=server.address,
            health_path=project.config.app.health_check_path,
        )
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
        return {"host": server.ssh.target.name, "url": f"https://{server.address}/", **result}


def logs(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
    follow: bool = False,
    lines: int = 100,
    process: str | None = None,
    access: str | None = None,
) -> int:
    """The journal of gunicorn and Django, the processes, the schedules and the backup
    timers (or of the one process or schedule named, from the host that runs them); or,
    with `access` ("text" or "json"), the access log Caddy writes."""
    args = ["logs", project.config.app.name, str(lines), *(["follow"] if follow else [])]
    args += ["process", process] if process else []
    args += ["access", *(["json"] if access == "json" else [])] if access else []
    if host is None and process:  # (a process's journal: on the host that runs it)
        host = project.config.background_host
    with connect(project, host, reporter) as server:
        return server.ssh.interactive(server.ssh.agent_command(args))


def manage(project: Project, host: str | None, reporter: Reporter, *, args: list[str]) -> int:
    """manage.py in the live release, as the app user, with its environment loaded by systemd."""
    return _in_release(project, host, reporter, "manage", args)


def run(project: Project, host: str | None, reporter: Reporter, *, args: list[str]) -> int:
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


def audit(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
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
    from onebox import audit as outside  # (here: its TLS and port scan cost others 30 ms)

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


def history(project: Project, host: str | None, reporter: Reporter, *, lines: int = 30) -> Result:
    """The server's audit trail of operations on this app, oldest first."""
    return _simple(project, host, reporter, HistoryRequest(lines=lines))

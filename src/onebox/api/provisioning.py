"""`onebox setup`: the request, then the new SSH connections that confirm its
changes to sshd and the firewall (and turn root login off).
"""

from __future__ import annotations

import time
from dataclasses import replace

from onebox import no_deploy_user, remote
from onebox.agent.requests import (
    ConfirmRequest,
    SetupRequest,
)
from onebox.api.server import (
    Reporter,
    Result,
    check_python,
    connect,
    facts,
    front_settings,
    rendered_files,
    uv_version,
)
from onebox.config import Project, set_server_user
from onebox.errors import (
    ConnectionFailed,
)
from onebox.transport import DEPLOY_USER, SSH, Target


def setup(
    project: Project, host: str | None, reporter: Reporter, *, dry_run: bool = False
) -> Result:
    with connect(project, host, reporter) as server:
        request = SetupRequest(
            app=project.config.app.name,
            uv_version=uv_version(),
            files=rendered_files(project, server.address),
            security=project.config.security.model_dump(),
            redis=project.config.redis,
            database=project.config.database.model_dump(),
            backup=project.config.backup.model_dump(),
            **front_settings(project),
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

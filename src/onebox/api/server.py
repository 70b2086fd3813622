"""Reaching the server: the target, the SSH connection, its facts, and the files
rendered for it (units, Caddy's site, timers) from onebox.toml.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from uv import find_uv_bin

from onebox import hosts, remote, sandbox
from onebox.agent.paths import BALANCED_PORT, MOVE_PORTS, AppPaths
from onebox.agent.requests import (
    FactsRequest,
    Request,
)
from onebox.agent.sizing import UPSTREAM_KEEPALIVE
from onebox.config import Project
from onebox.detect import python_requirement
from onebox.errors import (
    ConfigError,
    RemoteStepFailed,
)
from onebox.python_support import check_requires_python
from onebox.templating import render
from onebox.transport import SSH, Target

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
        yield Server(ssh=ssh, address=site_address(project) or ssh.hostname)
    finally:
        ssh.close()


def site_address(project: Project) -> str:
    """What browsers use, if not the host's own address: the domain, or the address of
    the load balancer in front of the web hosts."""
    cfg = project.config
    lb = cfg.servers.managed_lb
    return cfg.server.domain or (hosts.address_of(lb) if lb else "")


def balancer_addresses(project: Project) -> list[str]:
    """The load balancer's addresses (or networks, for an external one), which the web
    hosts admit to their port 8480 and take client addresses from."""
    servers = project.config.servers
    if servers.lb == "external":
        return servers.lb_addresses
    return hosts.ip_addresses(servers.lb) if servers.lb else []


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


def unit_context(project: Project, address: str, host: str = "") -> dict[str, object]:
    """What every template of the app's units and sites is rendered with."""
    cfg = project.config
    paths = AppPaths(cfg.app.name)
    return {
        "app": cfg.app.name,
        **paths.template_context(),
        "wsgi": cfg.app.wsgi,
        "asgi": cfg.app.asgi,
        "workers": cfg.app.workers,
        "upstream_keepalive": UPSTREAM_KEEPALIVE,
        "drain": cfg.deploy.drain,
        "workdir": str(Path(cfg.app.manage).parent).strip("."),
        "address": address,
        # (behind a balancer, a web host's own HTTPS site is for onebox's checks on the
        # host itself: its CA's certificate, no ACME for the public name, which is the
        # balancer's to answer)
        "tls_internal": tls_internal(project, address)
        or bool(cfg.servers.lb)
        or host in cfg.servers.worker,  # (nor on a worker host: no one visits it)
        "tls_files": " ".join(map(str, paths.caddy_cert)) if cfg.apache.cert else "",
        "ports": "normal",
        "move_ports": MOVE_PORTS,
        "balancer": " ".join(balancer_addresses(project)),
        "balanced_port": BALANCED_PORT,
    }


def rendered_files(
    project: Project,
    address: str,
    ports: str = "normal",
    proxy: str | None = None,
    host: str = "",
) -> dict[str, str]:
    """The files the server gets, for `proxy` (else [server] proxy); `ports` "moving":
    Caddy beside Apache on the move ports (`onebox adopt --switch-to caddy`)."""
    cfg = project.config
    context = unit_context(project, address, host)
    context["ports"] = ports
    two_years, one_year = 63072000, 31536000
    default_hsts = one_year if tls_internal(project, address) else two_years
    context["hsts_max_age"] = cfg.security.hsts_max_age or default_hsts
    apache = (proxy or cfg.server.proxy) == "apache"
    context["vhost"] = cfg.apache.vhost
    names = {
        "unit": "app.service.j2",
        "tmpfiles": "tmpfiles.conf.j2",
        "caddyfile": "Caddyfile.j2",
        "site": "site.apache.j2" if apache else "site.caddy.j2",
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


def data_settings(project: Project) -> dict[str, Any]:
    """What the server keeps of [database] and [backup] (for its scheduled jobs)."""
    return {
        "database": project.config.database.model_dump(),
        "backup": project.config.backup.model_dump(),
    }


def front_settings(project: Project) -> dict[str, Any]:
    """What answers on 80 and 443 ([server] proxy), and the adopted Apache site."""
    cfg = project.config
    return {"proxy": cfg.server.proxy, "apache": cfg.apache.model_dump()}


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


def _simple(project: Project, host: str | None, reporter: Reporter, request: Request) -> Result:
    with connect(project, host, reporter) as server:
        request.app = project.config.app.name
        return remote.call(server.ssh, remote.pack(request), reporter.event)


def download(ssh: SSH, agent_args: list[str], target: Path, what: str) -> None:
    """Stream what the server's `onebox-agent AGENT_ARGS` prints into `target` (a dump,
    an image: possibly larger than memory), through a .partial file renamed once whole;
    on failure nothing is left and the error says `what` failed, with the server's words."""
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as handle:
        process = ssh.popen(ssh.agent_command(agent_args), stdout=handle, stderr=subprocess.PIPE)
        _, error = process.communicate()
    if process.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RemoteStepFailed(
            f"{what} failed", host=ssh.target.name, output=error.decode(errors="replace")[-2000:]
        )
    partial.replace(target)

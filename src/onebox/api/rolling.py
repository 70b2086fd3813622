"""A rolling deploy (and rollback) across the web hosts ([servers] web).

The release is built on every web host first, beside the live one, started and health
checked there without traffic (the agent's deploy with `hold`); the first host's build
also checks, backs up and applies the migrations, once, before any host switches. Then
the hosts switch one at a time (the agent's rollback onto the held release: a switch of
a running release, with the deploy's probation), each behind the load balancer, which
keeps sending requests to the others. If a host fails, the hosts already switched go
back to the release they served: at the end, every host serves the same release.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from onebox import remote
from onebox.api.releasing import call_deploy, collect_files, deploy_request, rollback_request
from onebox.api.server import Reporter, Result, Server, connect
from onebox.config import Project
from onebox.errors import ConfigError, ConnectionFailed, OneboxError
from onebox.lock import Lock


def chosen_hosts(project: Project, skip: tuple[str, ...]) -> list[str]:
    web = project.config.web_hosts
    unknown = [name for name in skip if name not in web]
    if unknown:
        raise ConfigError(
            f"--skip-host {unknown[0]} is not one of the web hosts",
            hint=f"[servers] web lists them: {', '.join(web)}",
        )
    chosen = [name for name in web if name not in skip]
    if not chosen:
        raise ConfigError("--skip-host leaves no web host to deploy to")
    return chosen


def reach_all(
    project: Project, names: list[str], reporter: Reporter, stack: ExitStack
) -> dict[str, Server]:
    """Every chosen host answers before anything starts, or the deploy is refused."""
    servers: dict[str, Server] = {}
    for name in names:
        server = stack.enter_context(connect(project, name, reporter))
        try:
            server.ssh.connect()
        except ConnectionFailed as exc:
            raise ConnectionFailed(
                f"web host {name} does not answer, so nothing was deployed: {exc.message}",
                host=name,
                hint=f"start it again, or deploy to the others with `onebox deploy "
                f"--skip-host {name}` (the load balancer sends no traffic to a host that "
                "fails its health checks)",
            ) from None
        servers[name] = server
    return servers


def deploy(
    project: Project, reporter: Reporter, *, allow_breaking: bool, skip: tuple[str, ...]
) -> Result:
    cfg = project.config
    if allow_breaking:
        raise ConfigError(
            "--allow-breaking is for one host: with several web hosts, the old release "
            "would go on serving the new schema on the hosts not yet switched",
            hint="make the migration backward compatible (add first, remove in a later "
            "deploy), or deploy it to one host with --host",
        )
    names = chosen_hosts(project, skip)
    for name in skip:
        reporter.notice(f"{name} is skipped: it keeps the release it has")
    files = collect_files(project, reporter)
    first = cfg.web_hosts[0]
    with ExitStack() as stack:
        servers = reach_all(project, names, reporter, stack)
        held: dict[str, Result] = {}
        locks: dict[str, Lock] = {}
        for index, name in enumerate(names, 1):
            reporter.notice(f"{name} ({index}/{len(names)}): the release, beside the live one")
            server = servers[name]
            request = deploy_request(
                project, server, reporter, files, False, background_here=name == first, locks=locks
            )
            request.hold = True
            try:
                held[name] = call_deploy(project, server, files, request, reporter)
            except OneboxError as exc:
                raise stopped(
                    exc,
                    name,
                    "before any host switched: every web host serves the release it served",
                ) from None
        switched: list[tuple[str, str]] = []  # (host, the release it served before)
        problems: list[str] = []
        for index, name in enumerate(names, 1):
            release = str(held[name]["release"])
            reporter.notice(f"{name} ({index}/{len(names)}): traffic to release {release}")
            try:
                result = switch(servers[name], project, reporter, release, standby=True)
            except OneboxError as exc:
                back = switch_back(servers, project, reporter, switched)
                raise stopped(exc, name, back) from None
            switched.append((name, str(result.get("previous") or "")))
            problems += [f"{name}: {problem}" for problem in result.get("problems") or []]
    return {
        **held[names[0]],
        "url": f"https://{servers[names[0]].address}/",
        "problems": problems,
        "host": names[0],
        "hosts": [{"host": name, "release": held[name]["release"]} for name in names],
        "skipped": list(skip),
    }


def switch(
    server: Server, project: Project, reporter: Reporter, release: str | None, *, standby: bool
) -> dict[str, Any]:
    """The agent's rollback onto `release` (a deploy's held one: it runs already)."""
    deploy = project.config.deploy
    request = rollback_request(
        project,
        server,
        release,
        force=not standby,  # (going back: the newer migrations were applied by this deploy)
        probation=deploy.probation if standby else 0,
        standby=deploy.standby if standby else None,
    )
    return remote.call(server.ssh, remote.pack(request), reporter.event)


def switch_back(
    servers: dict[str, Server],
    project: Project,
    reporter: Reporter,
    switched: list[tuple[str, str]],
) -> str:
    """The hosts already switched, back on the release they served; what happened."""
    if not switched:
        return "no host had switched: every web host serves the release it served"
    went_back, failed = [], []
    for name, previous in reversed(switched):
        reporter.notice(f"{name}: back to release {previous}")
        try:
            switch(servers[name], project, reporter, previous, standby=False)
            went_back.append(name)
        except OneboxError as exc:
            failed.append(f"{name} ({exc.message})")
    they = "it" if len(went_back) == 1 else "they"
    said = f"{', '.join(went_back)} went back to the release {they} served" if went_back else ""
    if failed:
        said += ("; " if said else "") + "going back failed on " + "; ".join(failed)
    return said


def stopped(exc: OneboxError, host: str, what_now: str) -> OneboxError:
    exc.message = f"the rolling deploy stopped on {host}: {exc.message}; {what_now}"
    if isinstance(exc, ConnectionFailed):  # (powered off, or its network went away)
        exc.hint = (
            f"once {host} answers again, deploy again; to deploy to the other web hosts "
            f"meanwhile: `onebox deploy --skip-host {host}`"
        )
    else:  # (a host going down mid-deploy may say why its agent stopped, not that)
        down = f"if {host} is down or going down, `onebox deploy --skip-host {host}` deploys "
        exc.hint = "\n".join(filter(None, [exc.hint, down + "to the other web hosts"]))
    return exc


def rollback(project: Project, reporter: Reporter, *, force: bool) -> Result:
    """Each web host back to its previous release, one at a time; if one fails, those
    already back go forward again."""
    names = project.config.web_hosts
    with ExitStack() as stack:
        servers = reach_all(project, names, reporter, stack)
        done: list[tuple[str, str]] = []
        results: list[Result] = []
        for index, name in enumerate(names, 1):
            reporter.notice(f"{name} ({index}/{len(names)}): rolling back")
            try:
                result = rollback_one(servers[name], project, reporter, force)
            except OneboxError as exc:
                back = switch_back(servers, project, reporter, done)
                exc.message = f"the rolling rollback stopped on {name}: {exc.message}; {back}"
                raise exc from None
            done.append((name, str(result.get("previous") or "")))
            results.append({"host": name, **result})
        problems = [f"{r['host']}: {p}" for r in results for p in r.get("problems") or []]
        url = f"https://{servers[names[0]].address}/"
    return {**results[0], "url": url, "problems": problems, "hosts": results}


def rollback_one(server: Server, project: Project, reporter: Reporter, force: bool) -> Result:
    request = rollback_request(project, server, None, force)
    return remote.call(server.ssh, remote.pack(request), reporter.event)

"""A rolling deploy (and rollback) across the app hosts: the web hosts ([servers] web),
then the worker hosts ([servers] worker).

First the roll lock on every host (nothing else deploys to one of them until the end).
The release is built on every host, beside the live one, started and health checked
there without traffic (the agent's deploy with `hold`); the first host's build also
checks, backs up and applies the migrations, once, before the others build ([deploy]
batch of them at once) and before any host switches. Then the hosts switch, one (or a
batch) at a time: the agent's rollback onto the held release, a switch of a running
release with the deploy's probation, behind the load balancer, which keeps sending
requests to the others. If a host fails, the hosts already switched go back to the
release they served, and the others stop the release they held: at the end, every host
serves the same release. Once all serve it, [deploy] after_switch runs on the first.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

from onebox import remote
from onebox.agent.requests import (
    AfterSwitchRequest,
    DeployRequest,
    DiscardHeldRequest,
    FactsRequest,
)
from onebox.api.releasing import call_deploy, collect_files, deploy_request, rollback_request
from onebox.api.server import Reporter, Result, Server, connect
from onebox.bundle import Bundle, deployer
from onebox.config import Project
from onebox.errors import ConfigError, ConnectionFailed, LockedError, OneboxError
from onebox.lock import Lock


def chosen_hosts(project: Project, skip: tuple[str, ...]) -> list[str]:
    hosts = project.config.app_hosts
    unknown = [name for name in skip if name not in hosts]
    if unknown:
        raise ConfigError(
            f"--skip-host {unknown[0]} is not one of the web or worker hosts",
            hint=f"[servers] web and worker list them: {', '.join(hosts)}",
        )
    chosen = [name for name in hosts if name not in skip]
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


@contextmanager
def roll_lock(
    project: Project, servers: dict[str, Server], action: str, reporter: Reporter
) -> Iterator[str]:
    """The roll lock on every chosen web host, from here to the end of the roll: nothing
    else deploys, rolls back or restores on any of them meanwhile (agent/lock.py). Each
    is a process of the agent's that holds it until its standard input closes; the
    token lets this roll's own calls through. A host whose agent predates the lock gets
    the current agent (any streamed call installs it) and is asked again."""
    token = secrets.token_hex(16)
    holder = re.sub(r"[^A-Za-z0-9_.@+-]", "_", deployer())[:100]
    app = project.config.app.name
    holding: list[subprocess.Popen[bytes]] = []
    try:
        for name, server in servers.items():
            for attempt in (1, 2):
                process = server.ssh.popen(
                    server.ssh.agent_command(["roll-lock", app, token, holder, action]),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                assert process.stdout is not None
                said = process.stdout.readline().decode(errors="replace").strip()
                if said == "locked":
                    holding.append(process)
                    break
                error = (said + " " + _finish(process)).strip()
                if attempt == 1 and "unknown command" in error:
                    remote.call(server.ssh, remote.pack(FactsRequest(app=app)), reporter.event)
                    continue
                done = {"deploy": "deployed", "rollback": "rolled back"}[action]
                raise LockedError(
                    f"{name}: {error.removeprefix('busy: ') or 'the roll lock was refused'}; "
                    f"nothing was {done}",
                    host=name,
                    hint="wait for it to finish, then try again",
                )
        yield token
    finally:
        for process in holding:
            _finish(process)


def _finish(process: subprocess.Popen[bytes]) -> str:
    """Close its input (the lock goes), and what it said on stderr."""
    try:
        _, error = process.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        _, error = process.communicate()
    return error.decode(errors="replace").strip()


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
    if cfg.background_host in skip and (cfg.processes or cfg.schedule):
        reporter.notice(
            f"[processes] and [schedule] run on {cfg.background_host}: skipped, they keep "
            "running the release it has until it is deployed to"
        )
    files = collect_files(project, reporter)
    uploads = takes_uploads(files)
    if uploads and not cfg.media.shared:
        reporter.notice(
            f"{uploads} stores uploads, and they stay on the web host that received them: "
            'a file uploaded through one is not on the others. Set [media] storage = "s3" '
            "to share them (docs/media.md)"
        )
    with ExitStack() as stack:
        servers = reach_all(project, names, reporter, stack)
        roll = stack.enter_context(roll_lock(project, servers, "deploy", reporter))
        held = hold_everywhere(project, servers, names, files, roll, reporter)
        problems = switch_everywhere(project, servers, names, held, roll, reporter)
        hooks_failed = run_hooks(servers[names[0]], project, reporter, held[names[0]], roll)
    return {
        **held[names[0]],
        "url": f"https://{servers[names[0]].address}/",
        "problems": problems,
        "hooks_failed": hooks_failed,
        "batch": cfg.deploy.batch,
        "host": names[0],
        "hosts": [{"host": name, "release": held[name]["release"]} for name in names],
        "skipped": list(skip),
    }


UPLOAD_FIELD = re.compile(rb"\b(?:File|Image)Field\(")


def takes_uploads(files: Bundle) -> str:
    """The first models module with a FileField or ImageField (an app that takes
    uploads), or ""."""
    for name in files.files:
        path = files.root / name
        if path.suffix == ".py" and "models" in (path.stem, path.parent.name):
            try:
                if UPLOAD_FIELD.search(path.read_bytes()):
                    return str(name)
            except OSError:
                continue
    return ""


def hold_everywhere(
    project: Project,
    servers: dict[str, Server],
    names: list[str],
    files: Bundle,
    roll: str,
    reporter: Reporter,
) -> dict[str, Result]:
    """The release built and started beside the live one on every host, no traffic
    moved: the first host alone (its build migrates, once, before the others build),
    then the others [deploy] batch at a time."""
    background = project.config.background_host
    held: dict[str, Result] = {}
    locks: dict[str, Lock] = {}
    requests: dict[str, DeployRequest] = {}
    for group in [names[:1], *batches(names[1:], project.config.deploy.batch)]:
        for name in group:
            numbered = f"{name} ({names.index(name) + 1}/{len(names)})"
            reporter.notice(f"{numbered}: the release, beside the live one")
            requests[name] = deploy_request(
                project, servers[name], reporter, files, False,
                background_here=name == background, locks=locks,
            )  # fmt: skip
            requests[name].hold, requests[name].roll = True, roll
        done, failed = together(
            group, lambda n, r: call_deploy(project, servers[n], files, requests[n], r), reporter
        )
        held |= done
        if failed:
            name, exc = failed[0]
            untouched = "before any host switched: every web host serves the release it served"
            discard_held(servers, project, held, roll, reporter)
            raise stopped(exc, name, untouched) from None
    return held


def switch_everywhere(
    project: Project,
    servers: dict[str, Server],
    names: list[str],
    held: dict[str, Result],
    roll: str,
    reporter: Reporter,
) -> list[str]:
    """Traffic onto each host's held release, [deploy] batch hosts at a time; if one
    fails, those switched go back. The problems the hosts' sites reported."""
    switched: list[tuple[str, str]] = []  # (host, the release it served before)
    problems: list[str] = []
    for group in batches(names, project.config.deploy.batch):
        for name in group:
            numbered = f"{name} ({names.index(name) + 1}/{len(names)})"
            reporter.notice(f"{numbered}: traffic to release {held[name]['release']}")
        done, failed = together(
            group,
            lambda n, r: switch(servers[n], project, r, str(held[n]["release"]), roll),
            reporter,
        )
        for name in group:
            if name in done:
                switched.append((name, str(done[name].get("previous") or "")))
                problems += [f"{name}: {p}" for p in done[name].get("problems") or []]
        if failed:
            name, exc = failed[0]
            back = switch_back(servers, project, reporter, switched, roll)
            # (not on the hosts that failed: one may be down, and its own switch undid itself)
            failing = {f for f, _ in failed}
            others = {n: result for n, result in held.items() if n not in failing}
            discard_held(servers, project, others, roll, reporter)
            raise stopped(exc, name, back) from None
    return problems


def discard_held(
    servers: dict[str, Server],
    project: Project,
    held: dict[str, Result],
    roll: str,
    reporter: Reporter,
) -> None:
    """After a roll that stopped: on each host that built the release, the release
    stopped where it does not serve (it holds the memory of a second app). Best effort:
    the next deploy takes that slot anyway."""
    for name, result in held.items():
        request = DiscardHeldRequest(
            app=project.config.app.name, release=str(result["release"]), roll=roll
        )
        try:
            remote.call(servers[name].ssh, remote.pack(request), reporter.event)
        except OneboxError as exc:
            reporter.notice(f"{name}: the release it built still runs beside ({exc.message})")


def batches(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


def together(
    names: list[str], work: Callable[[str, Reporter], Result], reporter: Reporter
) -> tuple[dict[str, Result], list[tuple[str, OneboxError]]]:
    """`work` on each host, at once when there are several (each in a thread of its own,
    its progress named with its host); what each did, and the hosts that failed."""
    done: dict[str, Result] = {}
    failed: list[tuple[str, OneboxError]] = []
    if len(names) == 1:
        try:
            done[names[0]] = work(names[0], reporter)
        except OneboxError as exc:
            failed.append((names[0], exc))
        return done, failed
    screen = threading.Lock()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {n: pool.submit(work, n, HostReporter(reporter, n, screen)) for n in names}
    for name, future in futures.items():
        try:
            done[name] = future.result()
        except OneboxError as exc:
            failed.append((name, exc))
    return done, failed


class HostReporter:
    """One host's progress among several at once: each step named with its host, and
    one host's line at a time on the screen."""

    def __init__(self, reporter: Reporter, host: str, screen: threading.Lock) -> None:
        self.reporter, self.host, self.screen = reporter, host, screen

    def event(self, event: dict[str, object]) -> None:
        if "name" in event:
            event = {**event, "name": f"{self.host}: {event['name']}"}
        with self.screen:
            self.reporter.event(event)

    def notice(self, message: str) -> None:
        with self.screen:
            self.reporter.notice(f"{self.host}: {message}")


def switch(
    server: Server,
    project: Project,
    reporter: Reporter,
    release: str | None,
    roll: str,
    *,
    forward: bool = True,
) -> dict[str, Any]:
    """The agent's rollback onto `release`: a deploy's held one (it runs already), with
    the deploy's probation and standby; or, not `forward`, back to the release a host
    served."""
    deploy = project.config.deploy
    request = rollback_request(
        project,
        server,
        release,
        force=not forward,  # (going back: the newer migrations were applied by this deploy)
        probation=deploy.probation if forward else 0,
        standby=deploy.standby if forward else None,
    )
    request.roll = roll
    return remote.call(server.ssh, remote.pack(request), reporter.event)


def run_hooks(
    server: Server, project: Project, reporter: Reporter, held: Result, roll: str
) -> list[str]:
    """[deploy] after_switch, once every web host serves the release: on the first web
    host (the one that runs [processes] and [schedule] too); the hooks that failed."""
    cfg = project.config
    if not cfg.deploy.after_switch:
        return []
    request = AfterSwitchRequest(
        app=cfg.app.name,
        release=str(held["release"]),
        commands=cfg.deploy.after_switch,
        manage=cfg.app.manage,
        roll=roll,
    )
    result = remote.call(server.ssh, remote.pack(request), reporter.event)
    return list(result.get("hooks_failed") or [])


def switch_back(
    servers: dict[str, Server],
    project: Project,
    reporter: Reporter,
    switched: list[tuple[str, str]],
    roll: str,
) -> str:
    """The hosts already switched, back on the release they served; what happened."""
    if not switched:
        return "no host had switched: every web host serves the release it served"
    went_back, failed = [], []
    for name, previous in reversed(switched):
        reporter.notice(f"{name}: back to release {previous}")
        try:
            switch(servers[name], project, reporter, previous, roll, forward=False)
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
    names = project.config.app_hosts
    with ExitStack() as stack:
        servers = reach_all(project, names, reporter, stack)
        roll = stack.enter_context(roll_lock(project, servers, "rollback", reporter))
        done: list[tuple[str, str]] = []
        results: list[Result] = []
        for index, name in enumerate(names, 1):
            reporter.notice(f"{name} ({index}/{len(names)}): rolling back")
            try:
                result = rollback_one(servers[name], project, reporter, force, roll)
            except OneboxError as exc:
                back = switch_back(servers, project, reporter, done, roll)
                exc.message = f"the rolling rollback stopped on {name}: {exc.message}; {back}"
                raise exc from None
            done.append((name, str(result.get("previous") or "")))
            results.append({"host": name, **result})
        problems = [f"{r['host']}: {p}" for r in results for p in r.get("problems") or []]
        url = f"https://{servers[names[0]].address}/"
    return {**results[0], "url": url, "problems": problems, "hosts": results}


def rollback_one(
    server: Server, project: Project, reporter: Reporter, force: bool, roll: str
) -> Result:
    request = rollback_request(project, server, None, force)
    request.roll = roll
    return remote.call(server.ssh, remote.pack(request), reporter.event)

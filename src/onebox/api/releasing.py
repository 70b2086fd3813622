"""`onebox deploy`, `releases`, `rollback`, `cancel`: releases and the switches
between them.
"""

from __future__ import annotations

import hashlib

from onebox import background, bundle, remote
from onebox.agent.requests import (
    CancelRequest,
    DeployRequest,
    ReleasesRequest,
    RollbackRequest,
)
from onebox.api.server import (
    Reporter,
    Result,
    Server,
    _simple,
    check_python,
    connect,
    facts,
    rendered_files,
    unit_context,
)
from onebox.config import Project
from onebox.detect import settings_switches
from onebox.errors import (
    ConfigError,
    OneboxError,
)
from onebox.lock import Lock, lock
from onebox.python_support import check_django_python
from onebox.release_contents import check_settings_shipped, explain_missing_module


def deploy(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
    dry_run: bool = False,
    allow_breaking: bool = False,
    skip_hosts: tuple[str, ...] = (),
) -> Result:
    """One host's deploy; with several web hosts ([servers] web) and no --host, a rolling
    deploy across them (rolling.py)."""
    cfg = project.config
    if host is None and (len(cfg.app_hosts) > 1 or skip_hosts) and not dry_run:
        from onebox.api import rolling

        return rolling.deploy(project, reporter, allow_breaking=allow_breaking, skip=skip_hosts)
    files = collect_files(project, reporter)
    # (one host of several: [processes] and [schedule] only where they run, once)
    here = host is None or len(cfg.app_hosts) == 1 or host == cfg.background_host
    with connect(project, host, reporter) as server:
        request = deploy_request(
            project, server, reporter, files, allow_breaking, background_here=here
        )
        request.dry_run = dry_run  # the server says what each step would change
        result = call_deploy(project, server, files, request, reporter)
        return {"host": server.ssh.target.name, **result}


def collect_files(project: Project, reporter: Reporter) -> bundle.Bundle:
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
    return files


def deploy_request(
    project: Project,
    server: Server,
    reporter: Reporter,
    files: bundle.Bundle,
    allow_breaking: bool,
    *,
    background_here: bool = True,
    locks: dict[str, Lock] | None = None,
) -> DeployRequest:
    """What the server builds and runs; `background_here` False: a web host other than
    the first, which runs no [processes] or [schedule] (they run once, on the first)."""
    cfg = project.config
    found = facts(server, reporter)
    python = check_python(project, found)
    locked = (locks or {}).get(python)
    if locked is None:  # (a rolling deploy's hosts share one lock per Python)
        locked = lock(
            project.root, cfg.build.requirements, python, cfg.database.engine, bool(cfg.app.asgi)
        )
        if locked.note:
            reporter.notice(locked.note)
        if locks is not None:
            locks[python] = locked
    check_django_python(locked.text, python)
    lock_hash = locked.hash
    if cfg.server.python:  # its own virtualenv, never one made with the system Python
        lock_hash = hashlib.sha256(f"{lock_hash}|python{python}".encode()).hexdigest()[:16]
    context = unit_context(project, server.address, server.ssh.target.name)
    alone = project if background_here else without_background(project)
    return DeployRequest(
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
        env={**cfg.media.env(), **cfg.env.vars},  # (the user's own names win)
        secrets=[*cfg.env.secrets, *cfg.media.secrets],
        media=cfg.media.model_dump(),
        lock=locked.text,
        lock_hash=lock_hash,
        python=cfg.server.python,
        python_mirror=cfg.server.python_mirror,
        packages=[*locked.packages, *cfg.build.packages],
        files=rendered_files(project, server.address, host=server.ssh.target.name),
        engine=cfg.database.engine,
        keep=cfg.deploy.keep,
        probation=cfg.deploy.probation,
        drain=cfg.deploy.drain,
        standby=cfg.deploy.standby,
        security_skip=cfg.security.skip,
        switches=settings_switches(project.root, cfg.app.manage, cfg.app.settings),
        allow_breaking=allow_breaking,
        redis=cfg.redis,
        background=background.request_part(alone, context),
        serving={
            "workers": cfg.app.workers,
            "threads": cfg.app.threads,
            "worker_class": cfg.app.worker_class,
            "asgi": bool(cfg.app.asgi),
        },
    )


def without_background(project: Project) -> Project:
    config = project.config.model_copy(update={"processes": {}, "schedule": {}})
    return project.model_copy(update={"config": config})


def call_deploy(
    project: Project,
    server: Server,
    files: bundle.Bundle,
    request: DeployRequest,
    reporter: Reporter,
) -> Result:
    stream = remote.pack(request, project.root, files.files)
    try:
        result = remote.call(server.ssh, stream, reporter.event)
    except OneboxError as exc:
        cfg = project.config
        left_out = explain_missing_module(project.root, cfg.app.manage, files, exc.output or "")
        if left_out:
            exc.hint = left_out
        raise
    return {
        "url": f"https://{server.address}/",
        "commit": files.commit,
        "files": len(files.files),
        "bytes": files.size,
        **result,
    }


def cancel(project: Project, host: str | None, reporter: Reporter) -> Result:
    """Stop the app's deploy in progress before it moves traffic (see agent/cancel.py)."""
    return _simple(project, host, reporter, CancelRequest())


def releases(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, ReleasesRequest())


def rollback(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
    release: str | None = None,
    force: bool = False,
    restore_db: bool = False,
) -> Result:
    """Back to the previous (or the named) release, through the same zero-downtime switch;
    with restore_db, the database first goes back to the backup taken before the newer
    migrations (behind the maintenance page)."""
    cfg = project.config
    if host is None and len(cfg.app_hosts) > 1:
        if release or restore_db:
            raise ConfigError(
                "with several web hosts, a rollback to a named release or with --restore-db "
                "is made host by host",
                hint="`onebox releases --host NAME` lists a host's releases; then "
                "`onebox rollback RELEASE --host NAME` (each host names its own)",
            )
        from onebox.api import rolling

        return rolling.rollback(project, reporter, force=force)
    with connect(project, host, reporter) as server:
        request = rollback_request(project, server, release, force, restore_db=restore_db)
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
        return {"host": server.ssh.target.name, "url": f"https://{server.address}/", **result}


def rollback_request(
    project: Project,
    server: Server,
    release: str | None,
    force: bool,
    *,
    restore_db: bool = False,
    probation: float = 0,
    standby: bool | str | None = None,
) -> RollbackRequest:
    """A rollback onto `release` (None: the one before the live one); a rolling deploy's
    switch onto its held release passes the deploy's probation and standby."""
    cfg = project.config
    return RollbackRequest(
        app=cfg.app.name,
        release=release,
        force=force,
        restore_db=restore_db,
        address=server.address,
        health_path=cfg.app.health_check_path,
        manage=cfg.app.manage,
        drain=cfg.deploy.drain,
        probation=probation,
        standby=standby,
    )

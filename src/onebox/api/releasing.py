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
    OneboxError,
)
from onebox.lock import lock
from onebox.python_support import check_django_python
from onebox.release_contents import check_settings_shipped, explain_missing_module


def deploy(
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
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
            drain=cfg.deploy.drain,
            standby=cfg.deploy.standby,
            security_skip=cfg.security.skip,
            switches=settings_switches(project.root, cfg.app.manage, cfg.app.settings),
            allow_breaking=allow_breaking,
            redis=cfg.redis,
            background=background.request_part(project, unit_context(project, server.address)),
            serving={
                "workers": cfg.app.workers,
                "threads": cfg.app.threads,
                "worker_class": cfg.app.worker_class,
                "asgi": bool(cfg.app.asgi),
            },
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
    with connect(project, host, reporter) as server:
        request = RollbackRequest(
            app=cfg.app.name,
            release=release,
            force=force,
            restore_db=restore_db,
            address=server.address,
            health_path=cfg.app.health_check_path,
            manage=cfg.app.manage,
            drain=cfg.deploy.drain,
        )
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
        return {"host": server.ssh.target.name, "url": f"https://{server.address}/", **result}

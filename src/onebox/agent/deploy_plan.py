"""`onebox deploy --dry-run`: what each step of deploy.STEPS would change, from facts.

The release is unpacked into a scratch folder (removed at the end) so that its real
settings and pending migrations can be read, with its virtualenv if it exists already,
else with the live release's (said in the plan). Nothing the site uses is touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from . import build
from .plan import Change, command, files_change, package_changes
from .protocol import AgentError
from .releases import complete_releases
from .system import run

if TYPE_CHECKING:
    from .deploy import Deploy


@contextmanager
def scratch(d: Deploy) -> Iterator[None]:
    """The new release's files in a private temporary folder, the app's to read."""
    folder = Path(tempfile.mkdtemp(prefix=f"onebox-plan-{d.paths.app}-"))
    try:
        d.scratch = folder / "release"
        shutil.copytree(d.payload, d.scratch, symlinks=True)
        run(["chown", "-R", f"{d.paths.app}:{d.paths.app}", str(folder)])
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unpack(d: Deploy) -> list[Change]:
    count = sum(1 for p in d.payload.rglob("*") if p.is_file())
    return [Change("directory", str(d.release_dir), f"the new release: {count} files")]


def build_packages(d: Deploy) -> list[Change]:
    return package_changes(d.request.packages)


def virtualenv(d: Deploy) -> list[Change]:
    """The virtualenv of this lock, made if new; the scratch release runs with it, or,
    until it exists, with the live release's packages."""
    venv = d.paths.venvs / d.request.lock_hash
    ready = (venv / ".onebox-complete").is_file()
    live = (d.paths.current / ".venv").resolve() if d.paths.current.is_symlink() else None
    probe_venv = venv if ready else live
    if probe_venv is not None and probe_venv.is_dir():
        os.symlink(probe_venv, d.scratch / ".venv")
        d.release = build.release_at(d.paths, d.scratch, d.request, d.values, d.secrets)
    if ready:
        return []
    lines = [line for line in d.request.lock.splitlines() if "==" in line]
    changes = [Change("virtualenv", str(venv), f"{len(lines)} pinned packages")]
    if live is not None:
        note = "settings and migrations below were read with the live release's packages"
        changes.append(Change("note", note + " (the new ones are not installed yet)"))
    return changes


def settings(d: Deploy) -> list[Change]:
    if d.release is None:
        return [Change("note", "no virtualenv yet: the settings are read when it runs")]
    try:
        d.settings = d.built.settings()
    except AgentError as exc:
        return [Change("note", f"the settings could not be read: {exc.message}")]
    if d.settings.get("SQLITE_IN_RELEASE"):
        return [Change("note", "the SQLite file in the project is linked to the app's database")]
    return []


def collectstatic(d: Deploy) -> list[Change]:
    if not d.request.collectstatic:
        return []
    return [command(["python", d.request.manage, "collectstatic", "--noinput"])]


def migration_check(d: Deploy) -> list[Change]:
    try:
        found = d.built.check_migrations()
    except AgentError as exc:
        return [Change("note", f"the migrations could not be checked: {exc.message}")]
    return [
        Change("migration", f"{o['migration']}: {o['operation']}", f"{o['verdict']} {o['why']}")
        for o in found
    ]


def backup_before_migrating(d: Deploy) -> list[Change]:
    return [Change("backup", "the database, before migrating", ", ".join(d.pending))]


def run_migrate(d: Deploy) -> list[Change]:
    if not d.settings:
        return [Change("unknown", "pending migrations: known once the settings are read")]
    return [Change("migration", name) for name in d.pending]


def units(d: Deploy) -> list[Change]:
    files = d.request.files
    changes = files_change(
        {d.paths.unit_template: files["unit"], d.paths.tmpfiles: files["tmpfiles"]}
    )
    if any(c.target == str(d.paths.unit_template) for c in changes):
        changes.append(command(["systemctl", "daemon-reload"]))
    return changes


def freeze(d: Deploy) -> list[Change]:
    """(Its site, for the caddy site step: the settings' URLs filled in.)"""
    if d.settings:
        d.site = build.site_config(d.request, d.settings)
    return []


def prune(d: Deploy) -> list[Change]:
    """The releases beyond [deploy] keep, once the new one is in."""
    live = {d.paths.current.resolve()} if d.paths.current.is_symlink() else set()
    kept = [*complete_releases(d.paths), d.release_dir][-d.request.keep :]
    gone = [p for p in complete_releases(d.paths) if p not in kept and p not in live]
    return [Change("directory", f"remove release {p.name}") for p in gone]

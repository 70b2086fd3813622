"""The app's data: backups, their verification and key, restores, the database's
shell and dumps, and the maintenance page.
"""

from __future__ import annotations

from pathlib import Path

from onebox import remote
from onebox.agent.requests import (
    BackupKeyRequest,
    BackupRequest,
    BackupsRequest,
    MaintenanceRequest,
    RestoreRequest,
    VerifyRequest,
)
from onebox.api.server import (
    Reporter,
    Result,
    _simple,
    connect,
    download,
)
from onebox.config import Project
from onebox.errors import (
    ConfigError,
    UnsupportedError,
)


def backup(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, BackupRequest())


def backups(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, BackupsRequest())


def restore(
    project: Project, host: str | None, reporter: Reporter, *, backup_id: str | None = None
) -> Result:
    return _simple(project, host, reporter, RestoreRequest(id=backup_id))


def verify(
    project: Project, host: str | None, reporter: Reporter, *, backup_id: str | None = None
) -> Result:
    return _simple(project, host, reporter, VerifyRequest(id=backup_id))


def backup_key(project: Project, host: str | None, reporter: Reporter) -> Result:
    return _simple(project, host, reporter, BackupKeyRequest())


def maintenance(project: Project, host: str | None, reporter: Reporter, *, on: bool) -> Result:
    return _simple(project, host, reporter, MaintenanceRequest(on=on))


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
    project: Project,
    host: str | None,
    reporter: Reporter,
    *,
    target: Path,
    backup_id: str | None = None,
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
        args = [
            "dump",
            project.config.app.name,
            str(chosen["parts"]["db"]),
            str(chosen["dump_path"]),
        ]
        download(server.ssh, args, target, f"downloading backup {chosen['id']}")
        return {
            "id": chosen["id"],
            "engine": chosen["engine"],
            "file": str(target),
            "bytes": target.stat().st_size,
        }

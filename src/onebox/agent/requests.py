"""What the client asks of the agent: one dataclass per action, defined once, here.

The client builds these (onebox.api), `to_json` sends them in the tar stream, and the
agent reads them back with `parse`, which refuses an unknown action, an unknown key or a
missing one: the two sides cannot drift apart unnoticed (they ship together, so a
mismatch is a bug in onebox, reported as one). Defaults live here and nowhere else;
what onebox.toml decides has no default here at all (the config's default is the one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .protocol import AgentError

Table = dict[str, Any]  # a section of onebox.toml as the config dumped it


@dataclass(kw_only=True)
class Request:
    action: ClassVar[str] = ""
    app: str = ""
    by: str = ""  # who asked (user@machine, or a timer): for locks and the history
    login: str = ""  # who logged in to the server (SUDO_USER), filled in there
    run: str = ""  # this call's token: the result carries it

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, **dataclasses.asdict(self)}


@dataclass(kw_only=True)
class FactsRequest(Request):
    action = "facts"


@dataclass(kw_only=True)
class AdoptRequest(Request):
    """Read a site Apache + mod_wsgi serves (adopt.py): changes nothing."""

    action = "adopt-inspect"


@dataclass(kw_only=True)
class AdoptUndoRequest(Request):
    """The adopted vhost as it was: mod_wsgi serves the old code again (apache_site.py)."""

    action = "adopt-undo"


@dataclass(kw_only=True)
class ProxyMoveRequest(Request):
    """The adopted site off Apache onto Caddy, or back (proxy_move.py), or confirmed."""

    action = "proxy-move"
    to: str  # "caddy", "apache", or "confirm"
    address: str
    health_path: str
    files: dict[str, str]  # caddyfile_moving, site_moving, caddyfile_moved, site_moved
    cert: str  # the adopted certificate and key ([apache] cert, key), or ""
    key: str


@dataclass(kw_only=True)
class SetupRequest(Request):
    action = "setup"
    uv_version: str
    files: dict[str, str]  # rendered units, Caddyfile, site, timers
    security: Table
    redis: Table | None
    database: Table
    backup: Table
    proxy: str  # "caddy", or "apache": the server's own, kept in front ([apache])
    apache: Table
    dry_run: bool = False  # each step's plan, nothing changed (setup.py)
    # "app": the app's host; "db": the database host ([servers] db, db_host.py), reached
    # at `address` by the app hosts at `clients`
    role: str = "app"
    address: str = ""
    clients: list[str] = field(default_factory=list)
    # An app host whose database is on the database host: its CA's certificate (public),
    # and the app's password made there (into the secrets, never shown)
    database_ca: str = ""
    database_password: str = ""


@dataclass(kw_only=True)
class SwitchRequest(Request):
    """What a move of traffic onto a release needs (deploy and rollback)."""

    address: str  # what browsers use: the domain, or the server's address
    health_path: str
    manage: str
    drain: int  # [deploy] drain: how long the old slot may take to stop
    health_pages: Table | None = None
    probation: float = 0  # rollbacks skip it (the release served before)
    roll: str = ""  # a rolling deploy's or rollback's token: it holds the roll lock (lock.py)


@dataclass(kw_only=True)
class DeployRequest(SwitchRequest):
    action = "deploy"
    commit: str | None
    settings: str
    collectstatic: bool
    build: list[str]
    before_migrate: list[str]
    release: list[str]
    after_switch: list[str]
    env: dict[str, str]
    secrets: list[str]
    lock: str
    lock_hash: str
    python: str | None
    python_mirror: str
    packages: list[str]
    files: dict[str, str]
    engine: str
    keep: int
    probation: float
    security_skip: dict[str, str]
    switches: Table
    allow_breaking: bool
    redis: Table | None
    background: Table
    standby: bool | str  # [deploy] standby: True, False or "auto" (standby.py)
    serving: Table  # [app] workers, threads, worker_class (None: derived), asgi: sizing.py
    media: Table  # [media]: storage "local" or "s3" (media_storage.py), bucket, endpoint
    release_id: str = ""  # made on the server, from its clock
    dry_run: bool = False  # the plan of each step, nothing changed (deploy_plan.py)
    # A rolling deploy's first part ([servers] web): built, started on the idle slot and
    # healthy, traffic not moved; `rollback` to it then switches (rolling.py, client)
    hold: bool = False


@dataclass(kw_only=True)
class RollbackRequest(SwitchRequest):
    action = "rollback"
    release: str | None
    force: bool
    restore_db: bool
    # A rolling deploy's switch to the release it held: the old one kept as a deploy
    # keeps it ([deploy] standby), None for a plain rollback (which keeps none)
    standby: bool | str | None = None


@dataclass(kw_only=True)
class AfterSwitchRequest(Request):
    """A rolling deploy's [deploy] after_switch, once every web host serves `release`."""

    action = "after-switch"
    release: str
    commands: list[str]
    manage: str
    roll: str


@dataclass(kw_only=True)
class DiscardHeldRequest(Request):
    """After a rolling deploy stopped: the release held on a host, stopped (rolling.py)."""

    action = "discard-held"
    release: str
    roll: str


@dataclass(kw_only=True)
class EnvSetRequest(Request):
    action = "env-set"
    values: dict[str, str]
    backup: bool = False  # the off-site repository's credentials, not the app's


@dataclass(kw_only=True)
class EnvUnsetRequest(Request):
    action = "env-unset"
    keys: list[str]
    backup: bool = False


@dataclass(kw_only=True)
class EnvListRequest(Request):
    action = "env-list"
    reveal: bool = False
    backup: bool = False


@dataclass(kw_only=True)
class StatusRequest(Request):
    action = "status"
    address: str
    health_path: str


@dataclass(kw_only=True)
class BackupRequest(Request):
    action = "backup"
    reason: str = "manual"


@dataclass(kw_only=True)
class ExportRequest(Request):
    action = "export-image"
    workdir: str  # manage.py's folder in the release ("." at its top)


@dataclass(kw_only=True)
class BackupsRequest(Request):
    action = "backups"


@dataclass(kw_only=True)
class RestoreRequest(Request):
    action = "restore"
    id: str | None = None  # the newest when None


@dataclass(kw_only=True)
class VerifyRequest(Request):
    action = "verify"
    id: str | None = None


@dataclass(kw_only=True)
class BackupKeyRequest(Request):
    action = "backup-key"


@dataclass(kw_only=True)
class MaintenanceRequest(Request):
    action = "maintenance"
    on: bool


@dataclass(kw_only=True)
class ReleasesRequest(Request):
    action = "releases"


@dataclass(kw_only=True)
class HistoryRequest(Request):
    action = "history"
    lines: int = 50


@dataclass(kw_only=True)
class AuditRequest(Request):
    action = "audit"
    manage: str
    security: Table
    lynis: bool = False


@dataclass(kw_only=True)
class ConfirmRequest(Request):
    action = "confirm"
    names: list[str] = field(default_factory=list)
    lockdown: bool = False
    confirm_within: int | None = None


@dataclass(kw_only=True)
class CancelRequest(Request):
    action = "cancel"


@dataclass(kw_only=True)
class ManageArgsRequest(Request):
    action = "manage-args"
    args: list[str]


@dataclass(kw_only=True)
class ScheduledRequest(Request):
    """Not sent by a client: a timer's run of a schedule, as the history records it."""

    action = "schedule"


def _kinds(base: type[Request]) -> list[type[Request]]:
    return [k for sub in base.__subclasses__() for k in (sub, *_kinds(sub))]


ACTIONS: dict[str, type[Request]] = {kind.action: kind for kind in _kinds(Request) if kind.action}


def parse(data: dict[str, Any]) -> Request:
    """The request the client sent, checked against its dataclass."""
    data = dict(data)
    kind = ACTIONS.get(str(data.pop("action", "")))
    if kind is None:
        raise AgentError(f"internal error: unknown agent action {data!r}")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise AgentError(f"internal error: {kind.action} request with unknown keys {unknown}")
    try:
        return kind(**data)
    except TypeError as exc:  # a required key missing
        raise AgentError(f"internal error: {kind.action} request: {exc}") from None

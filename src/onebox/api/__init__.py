"""The library API behind the CLI: each function is one onebox command.

Every command function takes `(project, host, reporter, *, options)`: a loaded Project,
the --host given (or None for [server] host), a `Reporter` (progress and notices), and
its options by name; it returns plain data, which the CLI prints as text or JSON.
"""

from onebox.api.app import (
    audit,
    caddy_root_ca,
    env_list,
    env_set,
    env_unset,
    history,
    logs,
    manage,
    run,
    status,
)
from onebox.api.data import (
    backup,
    backup_key,
    backups,
    db_pull,
    db_shell,
    maintenance,
    restore,
    verify,
)
from onebox.api.export import export_kubernetes
from onebox.api.provisioning import confirm_access, setup
from onebox.api.releasing import cancel, deploy, releases, rollback
from onebox.api.server import Reporter, Result, connect, resolve_target, unit_context

__all__ = [
    "Reporter", "Result", "audit", "backup", "backup_key", "backups", "caddy_root_ca",
    "cancel", "confirm_access", "connect", "db_pull", "db_shell", "deploy", "env_list",
    "env_set", "env_unset", "export_kubernetes", "history", "logs", "maintenance", "manage",
    "releases", "resolve_target", "restore", "rollback", "run", "setup", "status", "unit_context",
    "verify",
]  # fmt: skip

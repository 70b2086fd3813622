"""Migrations during a deploy: the pending ones checked against the release still
serving, a backup first, and the database put back should one fail half-way."""

from __future__ import annotations

from . import restore
from .django import Release
from .paths import AppPaths
from .protocol import AgentError, ExitCode, emit

TRANSACTIONAL_DDL = ("sqlite", "postgresql")


EXPAND_CONTRACT = """\
ship it in steps the serving code can live with (expand, then contract):
  - a new column: add it with null=True (or db_default=...), deploy; fill it; then make it
    NOT NULL in a later deploy, once every release still serving writes it;
  - dropping a column or table: first deploy code that no longer uses it (remove the field
    from the model state only, with migrations.SeparateDatabaseAndState), then drop it in
    a later deploy;
  - renaming: add the new column, write both, copy the data, switch reads, drop the old;
  - or take a short outage instead: `onebox deploy --allow-breaking` shows the
    maintenance page from before the migration until the new release serves"""


def check_pending(release: Release, allow_breaking: bool) -> tuple[list[str], str]:
    """The breaking operations among the pending migrations (refused unless allowed),
    and what the check found, in a line."""
    found = release.check_migrations()
    breaking = [
        f"{o['migration']}: {o['operation']} ({o['why']})"
        for o in found
        if o["verdict"] == "breaking"
    ]
    unchecked = [
        f"{o['migration']}: {o['operation']}" for o in found if o["verdict"] == "unchecked"
    ]
    if unchecked:
        emit(
            "log", text="not checked (onebox cannot tell what they change): " + "; ".join(unchecked)
        )
    if breaking and not allow_breaking:
        raise AgentError(
            f"{len(breaking)} migration operation(s) would break the release still serving "
            "while it runs (and any rollback); nothing was migrated",
            output="\n".join(breaking),
            hint=EXPAND_CONTRACT,
            code=ExitCode.CONFIG,
        )
    detail = f"{len(found)} operation(s): {len(breaking)} breaking, {len(unchecked)} unchecked"
    return breaking, detail


def migrate(
    paths: AppPaths, release: Release, settings: dict, engine: str, taken: dict | None
) -> bool:
    """`migrate`; if it fails after changing the schema (always possible on MySQL, whose
    DDL is not transactional; on the others when an earlier migration of the run was
    committed), the database is put back from the backup `taken` before it, so the live
    release never meets a half-migrated schema. True if it applied anything."""
    try:
        output = release.manage_py("migrate", "--noinput", what="migrate")
    except AgentError as exc:
        if taken is not None and schema_changed(release, settings, engine):
            emit("log", text=f"putting the database back as backup {taken['id']} holds it")
            restore.put_back(paths, taken)
            exc.message += f"; the database was put back from backup {taken['id']}"
        raise
    return "Applying " in output


def schema_changed(release: Release, settings: dict, engine: str) -> bool:
    if engine not in TRANSACTIONAL_DDL or settings.get("APPLIED") is None:
        return True
    return release.migrations()["applied"] != settings["APPLIED"]

"""Which pending migrations the code still serving can live with. Runs inside a release.

Between `migrate` and the switch, the live release's code serves against the migrated
schema, and a rollback puts older code back on it. An operation is *compatible* when that
code keeps working: it adds a table, a nullable column, an index. It is *breaking* when
that code would fail: it drops or renames a table or column the live code uses, adds a
NOT NULL column the live code's inserts leave out, changes a column's type, or makes a
column NOT NULL. RunPython, RunSQL and operations onebox does not know are *unchecked*:
they are listed, not refused.

"The live code" is read from the migrations already applied: the model state they build
is the schema the serving release was written for.

The agent reads this file and runs it with the release's own Python (`python -c`), after
`django.setup()`; it prints one line, `ONEBOX-MIGRATION-CHECK <json>`. Only the standard
library and Django are used. `classify_plan` is importable, for the unit tests.
"""

from __future__ import annotations

import json
import re

COMPATIBLE, BREAKING, UNCHECKED = "compatible", "breaking", "unchecked"

# Operations that change no column or table the live code uses.
ALWAYS_COMPATIBLE = {
    "AddIndex",
    "RemoveIndex",
    "RenameIndex",
    "AddIndexConcurrently",
    "RemoveIndexConcurrently",
    "AddConstraint",
    "AddConstraintNotValid",
    "ValidateConstraint",
    "RemoveConstraint",
    "AlterUniqueTogether",
    "AlterIndexTogether",
    "AlterModelOptions",
    "AlterModelManagers",
    "AlterModelTableComment",
    "CreateExtension",
    "BloomExtension",
    "BtreeGinExtension",
    "BtreeGistExtension",
    "CITextExtension",
    "CryptoExtension",
    "HStoreExtension",
    "TrigramExtension",
    "UnaccentExtension",
    "CreateCollation",
}


def classify_plan(plan: list, live: object, connection: object) -> list[dict[str, str]]:
    """One entry per operation of the pending migrations, in the order migrate runs them.

    plan: [(Migration, backwards)] as MigrationExecutor.migration_plan gives it;
    live: the ProjectState the applied migrations build (what the live code expects).
    """
    state = live.clone()  # type: ignore[attr-defined]  # (Django's ProjectState: untyped here)
    found = []
    for migration, backwards in plan:
        if backwards:  # a rollback of migrations: onebox never plans one
            continue
        label = f"{migration.app_label}.{migration.name}"
        for operation in migration.operations:
            after = state.clone()
            operation.state_forwards(migration.app_label, after)
            for verdict, why, described in _classify(
                operation, migration.app_label, state, after, live, connection
            ):
                found.append(
                    {"migration": label, "operation": described, "verdict": verdict, "why": why}
                )
            state = after
    return found


def _classify(operation, app_label: str, before, after, live, connection):
    kind = type(operation).__name__
    if kind == "SeparateDatabaseAndState":
        # Only its database operations touch the schema; they move a state of their own.
        state = before.clone()
        for inner in operation.database_operations:
            nxt = state.clone()
            inner.state_forwards(app_label, nxt)
            yield from _classify(inner, app_label, state, nxt, live, connection)
            state = nxt
        return
    verdict, why = _verdict(kind, operation, app_label, before, after, live, connection)
    yield verdict, why, _describe(operation)


def _verdict(kind, op, app_label, before, after, live, connection) -> tuple[str, str]:
    if kind in ALWAYS_COMPATIBLE:
        return COMPATIBLE, "changes no column the live code uses"
    if kind == "CreateModel":
        return COMPATIBLE, "adds a table"
    if kind in ("RunPython", "RunSQL"):
        return UNCHECKED, "runs code: onebox cannot tell what it changes"
    model = getattr(op, "model_name", None) or getattr(op, "name", None) or ""
    if kind == "RenameModel":
        model = op.old_name
    if not _live_model(live, app_label, model):
        # A model the live code does not have: nothing it runs can break.
        return COMPATIBLE, "changes only what the live code does not use"
    table = _table(before, app_label, model)
    if kind == "DeleteModel":
        return BREAKING, f"drops the table {table}, which the live code uses"
    if kind in ("RenameModel", "AlterModelTable"):
        new_model = op.new_name if kind == "RenameModel" else model
        new_table = _table(after, app_label, new_model)
        if new_table == table:
            return COMPATIBLE, "keeps the table's name"
        return BREAKING, f"renames the table {table} to {new_table}, which the live code uses"
    if kind == "AddField":
        return _add_field(op.field, table)
    if kind == "RemoveField":
        if op.name not in _fields(live, app_label, model):
            return COMPATIBLE, "removes a column the live code does not use"
        column = _column(op.name, _field(before, app_label, model, op.name))
        return BREAKING, f"drops the column {table}.{column}, which the live code uses"
    if kind == "RenameField":
        old = _field(before, app_label, model, op.old_name)
        new = _field(after, app_label, model, op.new_name)
        old_column, new_column = _column(op.old_name, old), _column(op.new_name, new)
        if old_column == new_column or op.old_name not in _fields(live, app_label, model):
            return COMPATIBLE, "keeps the column's name"
        return BREAKING, f"renames the column {table}.{old_column} to {new_column}"
    if kind == "AlterField":
        if op.name not in _fields(live, app_label, model):
            return COMPATIBLE, "changes a column the live code does not use"
        return _alter_field(before, after, app_label, model, op.name, table, connection)
    if kind == "AlterOrderWithRespectTo":
        if op.order_with_respect_to:
            return BREAKING, f"adds the NOT NULL column {table}._order"
        return COMPATIBLE, "drops a column only Django's ordering uses"
    return UNCHECKED, f"onebox does not know the operation {kind}"


def _add_field(field, table: str) -> tuple[str, str]:
    if field.many_to_many:
        return COMPATIBLE, "adds a table"
    if field.null or getattr(field, "generated", False):
        return COMPATIBLE, "adds a nullable column"
    from django.db.models import NOT_PROVIDED

    if getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:  # Django ≥ 5.0
        return COMPATIBLE, "adds a column with a database default"
    return BREAKING, (
        f"adds a NOT NULL column to {table} without a database default: the live code's "
        "inserts leave it out and fail (Django fills existing rows with `default`, then "
        "drops it from the schema)"
    )


VARCHAR = re.compile(r"^(?:varchar|character varying|nvarchar)\((\d+)\)$", re.IGNORECASE)


def _alter_field(before, after, app_label, model, name, table, connection) -> tuple[str, str]:
    old = before.apps.get_model(app_label, model)._meta.get_field(name)
    new = after.apps.get_model(app_label, model)._meta.get_field(name)
    if old.column != new.column:
        return BREAKING, f"renames the column {table}.{old.column} to {new.column}"
    old_type = old.db_parameters(connection=connection)["type"]
    new_type = new.db_parameters(connection=connection)["type"]
    if old_type != new_type:
        was, now = VARCHAR.match(old_type or ""), VARCHAR.match(new_type or "")
        if not (was and now and int(now.group(1)) >= int(was.group(1))):
            return (
                BREAKING,
                f"changes the type of {table}.{old.column} from {old_type} to {new_type}",
            )
    if old.null and not new.null:
        return BREAKING, f"makes {table}.{old.column} NOT NULL: the live code may still write NULL"
    return COMPATIBLE, "keeps the column's type and name"


def _live_model(live, app_label: str, model: str) -> bool:
    return (app_label, model.lower()) in live.models


def _fields(state, app_label: str, model: str) -> dict:
    found = state.models.get((app_label, model.lower()))
    return dict(found.fields) if found else {}


def _field(state, app_label: str, model: str, name: str):
    return _fields(state, app_label, model).get(name)


def _column(name: str, field) -> str:
    if field is None:
        return name
    if getattr(field, "db_column", None):
        return field.db_column
    relation = field.is_relation and not field.many_to_many
    return f"{name}_id" if relation else name


def _table(state, app_label: str, model: str) -> str:
    found = state.models.get((app_label, model.lower()))
    if found and found.options.get("db_table"):
        return found.options["db_table"]
    return f"{app_label}_{model.lower()}"


def _describe(operation) -> str:
    try:
        return operation.describe()
    except Exception:  # a third-party operation with a broken describe()
        return type(operation).__name__


def main() -> None:
    import django

    django.setup()
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    # What migrate itself starts from: the state of the migrations already applied.
    live = executor._create_project_state(with_applied_migrations=True)
    found = classify_plan(plan, live, connection)
    print("ONEBOX-MIGRATION-CHECK " + json.dumps({"operations": found}))


if __name__ == "__main__":
    main()

"""The migration classifier, run on Django's own migration objects (no database)."""

from __future__ import annotations

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[],
    )
    django.setup()

from django.db import connection, migrations, models  # noqa: E402
from django.db.migrations.state import ProjectState  # noqa: E402

from onebox.agent.migration_check import classify_plan  # noqa: E402

INITIAL = [
    migrations.CreateModel(
        "Entry",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("name", models.CharField(max_length=80)),
            ("note", models.TextField(null=True)),
        ],
    ),
]


def live_state() -> ProjectState:
    state = ProjectState()
    for operation in INITIAL:
        operation.state_forwards("shop", state)
    return state


def verdicts(*operations) -> list[tuple[str, str]]:
    migration = migrations.Migration("0002_change", "shop")
    migration.operations = list(operations)
    found = classify_plan([(migration, False)], live_state(), connection)
    return [(entry["verdict"], entry["why"]) for entry in found]


def verdict(*operations) -> str:
    return verdicts(*operations)[-1][0]


@pytest.mark.parametrize(
    "operation",
    [
        migrations.CreateModel("Note", [("id", models.BigAutoField(primary_key=True))]),
        migrations.AddField("entry", "rating", models.IntegerField(null=True)),
        migrations.AddField("entry", "tags", models.ManyToManyField("shop.Entry")),
        migrations.AddField("entry", "flag", models.BooleanField(db_default=False)),
        migrations.AddIndex("entry", models.Index(fields=["name"], name="entry_name_idx")),
        migrations.AlterField("entry", "name", models.CharField(max_length=200)),
        migrations.AlterField("entry", "note", models.TextField(null=True, blank=True)),
        migrations.AlterModelOptions("entry", {"ordering": ["name"]}),
    ],
    ids=lambda op: op.describe(),
)
def test_additive_operations_are_compatible(operation):
    assert verdict(operation) == "compatible"


@pytest.mark.parametrize(
    ("operation", "words"),
    [
        (migrations.RemoveField("entry", "name"), "drops the column shop_entry.name"),
        (migrations.DeleteModel("Entry"), "drops the table shop_entry"),
        (migrations.RenameField("entry", "name", "title"), "renames the column"),
        (migrations.RenameModel("Entry", "Post"), "renames the table shop_entry to shop_post"),
        (migrations.AlterModelTable("entry", "entries"), "renames the table"),
        (migrations.AddField("entry", "rating", models.IntegerField(default=0)), "NOT NULL"),
        (migrations.AlterField("entry", "name", models.IntegerField()), "changes the type"),
        (migrations.AlterField("entry", "name", models.CharField(max_length=20)), "type"),
        (migrations.AlterField("entry", "note", models.TextField(default="")), "NOT NULL"),
    ],
    ids=lambda value: value.describe() if hasattr(value, "describe") else "",
)
def test_what_the_live_code_uses_cannot_change_under_it(operation, words):
    found = verdicts(operation)
    assert found[-1][0] == "breaking"
    assert words in found[-1][1]


def test_a_model_the_live_code_lacks_may_change_freely():
    new_model = migrations.CreateModel(
        "Note",
        [("id", models.BigAutoField(primary_key=True)), ("text", models.TextField())],
    )
    assert (
        verdicts(
            new_model,
            migrations.AddField("note", "rating", models.IntegerField(default=0)),
            migrations.RemoveField("note", "text"),
            migrations.DeleteModel("Note"),
        )
        == [("compatible", "adds a table")]
        + [("compatible", "changes only what the live code does not use")] * 3
    )


def test_code_cannot_be_judged_but_is_listed():
    assert verdict(migrations.RunPython(migrations.RunPython.noop)) == "unchecked"
    assert verdict(migrations.RunSQL("SELECT 1")) == "unchecked"


def test_separate_database_and_state_is_judged_by_its_database_operations():
    # The contract step's first half: the model forgets the field, the column stays.
    state_only = migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RemoveField("entry", "note")]
    )
    assert verdicts(state_only) == []
    drop = migrations.SeparateDatabaseAndState(
        database_operations=[migrations.RemoveField("entry", "note")]
    )
    assert verdict(drop) == "breaking"


def test_a_db_column_kept_across_a_rename_is_compatible():
    keep = migrations.AlterField("entry", "name", models.CharField(max_length=80, db_column="name"))
    rename = migrations.RenameField("entry", "name", "title")
    assert verdicts(keep, rename)[-1][0] == "compatible"

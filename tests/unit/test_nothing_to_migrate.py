"""A code-only deploy skips `migrate` only when Django says it would apply nothing."""

from __future__ import annotations

import pytest

from onebox.agent.deploy import nothing_to_migrate

ANSWERED = {"APPLIED": ["shop.0001_initial"], "PENDING": [], "UNMIGRATED": []}


def test_nothing_pending_on_a_database_that_answered_skips_it():
    assert nothing_to_migrate(ANSWERED)


@pytest.mark.parametrize(
    "changed",
    [
        {"PENDING": ["shop.0002_price"]},  # a migration to apply
        {"APPLIED": None, "PENDING": None},  # the database did not answer: migrate says why
        {"UNMIGRATED": ["legacy"]},  # an app whose tables migrate makes without migrations
        {"APPLIED": [], "PENDING": ["shop.0001_initial"]},  # the first deploy
    ],
)
def test_anything_else_runs_it(changed):
    assert not nothing_to_migrate({**ANSWERED, **changed})


def test_settings_read_by_an_older_probe_run_it():
    assert not nothing_to_migrate({"APPLIED": [], "PENDING": []})

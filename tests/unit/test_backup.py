"""Backups, without a server: retention policy, grouping of snapshots, table comparison,
and the [database]/[backup] configuration."""

from pathlib import Path

import pytest

from onebox.agent.backup import group, kept
from onebox.agent.restore import compare
from onebox.config import load_config
from onebox.errors import ConfigError
from onebox.lock import Lock, pinned_names, with_driver

BASE = """
[app]
name = "shop"
settings = "config.settings"
wsgi = "config.wsgi:application"
"""


def daily_ids(days: int, per_day: int = 1) -> list[str]:
    from datetime import datetime, timedelta

    start = datetime(2026, 1, 1, 3, 15)
    return [
        (start + timedelta(days=d, hours=h)).strftime("%Y%m%d-%H%M%S")
        for d in range(days)
        for h in range(per_day)
    ]


def test_retention_keeps_7_daily_4_weekly_12_monthly():
    ids = daily_ids(400)
    keep = kept(ids, daily=7, weekly=4, monthly=12)
    newest = sorted(ids)[-7:]
    assert set(newest) <= keep  # the last 7 days
    months = {i[:6] for i in keep}
    assert len(months) == 12  # one per month, the 12 newest months
    assert len(keep) <= 7 + 4 + 12
    assert min(keep) > "20260101"  # the oldest are gone


def test_retention_keeps_only_the_newest_of_a_day_and_always_the_last_three():
    ids = daily_ids(2, per_day=5)  # 10 backups over two days
    keep = kept(ids, daily=7, weekly=0, monthly=0)
    assert sorted(ids)[-3:] == sorted(keep)[-3:]
    day_one = [i for i in ids if i.startswith("20260101")]
    assert max(day_one) in keep and min(day_one) not in keep


def test_retention_with_everything_zero_still_keeps_the_last_three():
    assert kept(daily_ids(10), 0, 0, 0) == set(sorted(daily_ids(10))[-3:])


def snap(backup_id: str, part: str, time: str = "2026-01-01T00:00:00Z") -> dict:
    tags = ["onebox", f"id={backup_id}", f"part={part}", "reason=manual", "db_bytes=10"]
    return {"short_id": f"{backup_id}-{part}", "time": time, "tags": tags}


def test_snapshots_group_into_backups_complete_with_both_parts():
    backups = group([snap("a", "db"), snap("a", "files"), snap("b", "db"), {"tags": None}])
    assert backups["a"]["complete"] and not backups["b"]["complete"]
    assert backups["a"]["parts"] == {"db": "a-db", "files": "a-files"}
    assert backups["a"]["db_bytes"] == 10 and backups["a"]["reason"] == "manual"


def test_compare_names_each_difference():
    expected = {"t1": [2, 10], "t2": [1, 5], "t3": [0, 0]}
    found = {"t1": [2, 11], "t2": [3, 5], "t4": [1, 1]}
    assert compare(expected, found) == [
        "t1: same row count, different content",
        "t2: 3 rows, 1 expected",
        "t3: missing",
        "t4: not in the backup",
    ]
    assert compare(expected, expected) == []


def load(tmp_path: Path, extra: str):
    path = tmp_path / "onebox.toml"
    path.write_text(BASE + extra)
    return load_config(path)


def test_database_and_backup_defaults(tmp_path):
    config = load(tmp_path, "")
    assert config.database.engine == "sqlite" and config.database.url == ""
    assert (config.backup.keep_daily, config.backup.keep_weekly, config.backup.keep_monthly) == (
        7,
        4,
        12,
    )
    assert config.backup.offsite == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[database]\nengine = "oracle"\n', "'database.engine'"),
        (
            '[database]\nengine = "mysql"\nurl = "mysql://u:secret@db/x"\n',
            "url holds a password",
        ),
        ('[database]\nengine = "mysql"\nurl = "postgres://u@db/x"\n', "must start with mysql://"),
        ('[database]\nurl = "mysql://u@db/x"\n', 'needs engine = "mysql" or "postgresql"'),
        ('[database]\nengine = "postgresql"\nurl = "postgres://db/x"\n', "user@host/name"),
        ('[backup]\noffsite = "backups/here"\n', "must be an absolute path"),
        ("[backup]\nkeep_daily = -1\n", "'backup.keep_daily'"),
        ('[backup]\nshedule = "daily"\n', "did you mean 'schedule'"),
    ],
)
def test_bad_database_and_backup_config(tmp_path, extra, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    assert message in info.value.message


def test_external_url_without_password_is_accepted(tmp_path):
    config = load(
        tmp_path, '[database]\nengine = "postgresql"\nurl = "postgres://app@db:5433/app"\n'
    )
    assert config.database.url.endswith("/app")


def test_driver_already_listed_is_not_added():
    text = "Django==5.2 \\\n    --hash=sha256:aa\nPyMySQL==1.1.1 \\\n    --hash=sha256:bb\n"
    assert {"django", "pymysql"} <= pinned_names(text)
    locked = Lock(text=text, packages=[])
    assert with_driver(locked, "mysql", "3.11", Path(".")) is locked
    assert with_driver(locked, "sqlite", "3.11", Path(".")) is locked

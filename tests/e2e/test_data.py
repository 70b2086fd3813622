"""Databases and backups, for each engine, on real practice servers.

examples/mvp is deployed three times on one Debian 12 server (SQLite, MariaDB,
PostgreSQL). Data is written through the app's form and admin, with an uploaded file;
then backed up, destroyed (tables dropped, media deleted), restored and compared row by
row. The off-site repositories are a local path and an SFTP server (a second practice
server). Each engine's tests run in order: the round trip, the timer, the off-site
copy, then verification of a good and of a tampered backup.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import (
    ROOT,
    S3_KEYS,
    S3_PORT,
    Server,
    copy_project,
    fetch,
    half_failing_migration,
    onebox,
    onebox_json,
)

pytestmark = pytest.mark.e2e

ENGINES = ["sqlite", "mysql", "postgresql"]
MARKER = "zebra-quartz-7781"  # a value only the app's data holds: grep for it in repositories


@dataclass
class App:
    name: str
    engine: str
    project: Path
    server: Server
    offsite: str

    @property
    def domain(self) -> str:
        return f"{self.name}.test"

    @property
    def url(self) -> str:
        return f"https://{self.domain}/"

    @property
    def db(self) -> str:
        return self.name.replace("-", "_")

    def cli(self, *args: str, check: bool = True, input: str | None = None):
        return onebox(*args, cwd=self.project, check=check, input=input)

    def json(self, *args: str) -> dict:
        return onebox_json(*args, cwd=self.project)["result"]

    def fetch(self, path: str = "/", args: tuple[str, ...] = ()):
        resolve = f"{self.domain}:443:{self.server.address}"
        return fetch(f"https://{self.domain}{path}", self.server.ca, resolve=resolve, args=args)

    def sql(self, statements: str) -> str:
        quoted = shlex.quote(statements)
        command = {
            "sqlite": f"sqlite3 /srv/{self.name}/shared/db/db.sqlite3 {quoted}",
            "mysql": f"mariadb --batch --skip-column-names {self.db} -e {quoted}",
            "postgresql": f"cd / && runuser -u postgres -- psql -X -At -d {self.db} -c {quoted}",
        }[self.engine]
        return self.server.ssh(command)

    def rows(self) -> str:
        """Every row the test wrote, in a form that differs if one byte of them does."""
        return self.sql(
            "SELECT id, name, message, attachment, created FROM guestbook_entry ORDER BY id;"
        ) + self.sql("SELECT id, username, password, is_superuser FROM auth_user ORDER BY id;")

    def media(self) -> str:
        return self.server.ssh(
            f"cd /srv/{self.name}/shared/media && find . -type f -exec sha256sum {{}} + | sort"
        )

    def destroy(self) -> None:
        self.sql(
            {
                "sqlite": "DROP TABLE guestbook_entry; DROP TABLE auth_user;",
                "mysql": "SET FOREIGN_KEY_CHECKS=0; DROP TABLE guestbook_entry, auth_user;",
                "postgresql": "DROP TABLE guestbook_entry, auth_user CASCADE;",
            }[self.engine]
        )
        self.server.ssh(f"rm -rf /srv/{self.name}/shared/media/*")


def make_app(engine: str, server: Server, offsite: Server | None, tmp: Path, name: str = "") -> App:
    name = name or {"sqlite": "gb-sqlite", "mysql": "gb-mysql", "postgresql": "gb-pg"}[engine]
    project = copy_project(ROOT / "examples" / "mvp", tmp / name)
    location = ""
    if offsite and engine == "mysql":
        location = f"sftp:root@{offsite.address}:/srv/offsite/{name}"
    elif offsite and engine == "postgresql":
        location = f"s3:http://{offsite.address}:{S3_PORT}/onebox-offsite/{name}"
    elif offsite:
        location = f"/var/backups/onebox-offsite/{name}"
    config = project / "onebox.toml"
    text = config.read_text()
    text = text.replace('name = "mvp"', f'name = "{name}"')
    text = text.replace('host = "sandbox:demo"', f'host = "{server.host}"')
    text = text.replace('domain = ""', f'domain = "{name}.test"')
    text = text.replace('engine = "sqlite"', f'engine = "{engine}"')
    if location:
        text += f'\n[backup]\noffsite = "{location}"\n'
    config.write_text(text)
    return App(name=name, engine=engine, project=project, server=server, offsite=location)


@pytest.fixture(scope="module", params=ENGINES)
def app(request, server12: Server, offsite: Server, tmp_path_factory) -> App:
    app = make_app(request.param, server12, offsite, tmp_path_factory.mktemp(request.param))
    setup = app.json("setup")
    if app.offsite.startswith("sftp:"):
        # The off-site host must accept the server's backup key: the user's one manual step.
        assert any("off-site repository not ready" in note for note in setup["notes"])
        key = app.json("backup", "key")["ssh_public_key"]
        offsite.ssh(f"echo {shlex.quote(key)} >> /root/.ssh/authorized_keys")
        assert "backups" in app.json("setup")["changed"]
    if app.offsite.startswith("s3:"):
        # The credentials as a user sets them (moto's server takes any, or none: what this
        # proves is restic's S3 backend under onebox, from init to restore, not the keys).
        pairs = [f"{key}={value}" for key, value in S3_KEYS.items()]
        app.cli("env", "set", "--backup", *pairs)
        assert "AWS_ACCESS_KEY_ID" in app.server.ssh(f"cat /etc/onebox/{app.name}.backup.env")
    deployed = app.cli("deploy")
    if app.engine == "mysql":  # a compiled driver, added and built by onebox alone
        assert "added mysqlclient" in deployed.stderr
        assert "build-essential" in server12.ssh("dpkg -l build-essential")
    server12.ca.write_text(app.cli("ca").stdout)
    return app


def write_data(app: App, tmp: Path) -> None:
    """An entry with an attachment through the form, another through the admin."""
    jar, upload = tmp / "cookies", tmp / "note.txt"
    upload.write_text(f"attachment of {app.name}: {MARKER}\n")
    page = app.fetch(args=("-c", str(jar))).body
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    posted = app.fetch(
        args=(
            "-b",
            str(jar),
            "-e",
            app.url,
            "-F",
            f"csrfmiddlewaretoken={token}",
            "-F",
            "name=Ada",
            "-F",
            f"message=form entry {MARKER} ✓ ünïcode",
            "-F",
            f"attachment=@{upload}",
        )
    )
    assert posted.status == 302
    app.cli(
        "manage",
        "--",
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='admin').exists() or "
        "User.objects.create_superuser('admin', 'admin@example.com', 'pw-for-tests-only')",
    )
    login = app.fetch("/admin/login/", args=("-c", str(jar), "-b", str(jar))).body
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
    logged_in = app.fetch(
        "/admin/login/?next=/admin/",
        args=(
            "-c",
            str(jar),
            "-b",
            str(jar),
            "-e",
            f"{app.url}admin/login/",
            "-d",
            f"csrfmiddlewaretoken={token}&username=admin&password=pw-for-tests-only",
            "-d",
            "next=/admin/",
        ),
    )
    assert logged_in.status == 302, logged_in.body[:500]
    add = app.fetch("/admin/guestbook/entry/add/", args=("-b", str(jar), "-c", str(jar))).body
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', add).group(1)
    added = app.fetch(
        "/admin/guestbook/entry/add/",
        args=(
            "-b",
            str(jar),
            "-c",
            str(jar),
            "-e",
            f"{app.url}admin/guestbook/entry/add/",
            "-F",
            f"csrfmiddlewaretoken={token}",
            "-F",
            "name=Grace",
            "-F",
            f"message=admin entry {MARKER}",
            "-F",
            "_save=Save",
        ),
    )
    assert added.status == 302, added.body[:500]


def test_backup_destroy_restore_is_identical(app: App, tmp_path):
    write_data(app, tmp_path)
    rows, media = app.rows(), app.media()
    assert rows.count(MARKER) == 2 and "admin" in rows and "attachments/" in media

    made = app.json("backup")
    assert made["manifest"]["engine"] == app.engine
    assert made["manifest"]["db"]["tables"]["guestbook_entry"][0] == 2
    assert made["offsite"] == app.offsite
    listed = {b["id"]: b for b in app.json("backups")["backups"]}
    assert listed[made["id"]]["where"] == ["server", "off-site"]
    assert listed[made["id"]]["media_files"] == 1

    app.destroy()
    assert app.fetch().status == 500  # the app lost its tables
    assert app.media() == ""

    restored = app.json("restore")
    assert restored["restored"] == made["id"]
    assert app.rows() == rows
    assert app.media() == media
    page = app.fetch()
    assert page.status == 200 and f"form entry {MARKER}" in page.body
    attachment = re.search(r'href="(/media/attachments/[^"]+)"', page.body).group(1)
    assert MARKER in app.fetch(attachment).body
    # the safety backup holds the data as it was before the restore (destroyed)
    safety = {b["id"]: b for b in app.json("backups")["backups"]}[restored["safety_backup"]]
    assert safety["reason"] == "safety" and safety["media_files"] == 0


def test_db_pull_and_db_shell(app: App, tmp_path):
    target = tmp_path / "dump"
    made = app.json("backup")  # the latest was the safety backup of the restore: destroyed data
    pulled = app.json("db", "pull", str(target))
    assert pulled["id"] == made["id"]
    assert pulled["bytes"] == target.stat().st_size > 0
    data = target.read_bytes()
    if app.engine == "sqlite":
        assert data.startswith(b"SQLite format 3")
    elif app.engine == "mysql":
        assert b"INSERT INTO `guestbook_entry`" in data and MARKER.encode() in data
    else:
        assert data.startswith(b"PGDMP")
    counted = app.cli("db", "shell", input="SELECT COUNT(*) FROM guestbook_entry;\n")
    assert "2" in counted.stdout.split()


def test_scheduled_backup_runs_from_its_timer(app: App):
    timers = app.server.ssh(f"systemctl list-timers --all --no-pager onebox-{app.name}-*")
    assert f"onebox-{app.name}-backup.timer" in timers
    assert f"onebox-{app.name}-verify.timer" in timers
    app.json("backup")
    app.json("backup")
    before = {b["id"] for b in app.json("backups")["backups"]}
    assert len(before) >= 4
    app.server.ssh(f"systemctl start onebox-{app.name}-backup.service")  # what the timer starts
    after = app.json("backups")["backups"]
    new = [b for b in after if b["id"] not in before]
    assert len(new) == 1 and new[0]["reason"] == "scheduled"
    assert new[0]["where"] == ["server", "off-site"]
    # retention (7 daily, 4 weekly, 12 monthly, and always the newest 3): all of today's
    # backups but the newest 3 are gone, on the server and off-site
    assert [b["id"] for b in after] == sorted(before | {new[0]["id"]})[-3:]
    status = app.json("status")["backups"]
    assert status["backup"]["ok"] and status["backup"]["id"] == new[0]["id"]
    assert status["backup_timer"]["active"] and not status["backup_unit_failed"]
    journal = app.server.ssh(f"journalctl -u onebox-{app.name}-backup --no-pager -o cat")
    assert f"backup done: {new[0]['id']}" in journal


def offsite_files(app: App, offsite: Server) -> tuple[Server, str]:
    if app.offsite.startswith("sftp:"):
        return offsite, app.offsite.rpartition(":")[2]
    if app.offsite.startswith("s3:"):  # the bucket's objects, fetched into a folder
        offsite.ssh(f"/opt/s3/bin/python /opt/s3/fetch.py onebox-offsite {app.name} /tmp/s3-copy")
        return offsite, "/tmp/s3-copy"
    return app.server, app.offsite


def test_offsite_copy_is_encrypted_and_restores(app: App, offsite: Server):
    host, path = offsite_files(app, offsite)
    assert "data" in host.ssh(f"ls {path}")
    for where, folder in ((host, path), (app.server, f"/srv/{app.name}/backups/repository")):
        found = where.ssh(f"grep -r -l -a {MARKER} {folder} || true")
        assert found.strip() == "", f"plaintext in the repository: {found}"
    rows, media = app.rows(), app.media()
    # The server's own repository is lost: the off-site copy still restores.
    app.server.ssh(f"rm -rf /srv/{app.name}/backups/repository")
    app.destroy()
    restored = app.json("restore")
    assert restored["from"] == "off-site"
    assert app.rows() == rows and app.media() == media
    # the safety backup taken before that restore made the server a new repository
    assert app.server.ssh(f"ls /srv/{app.name}/backups/repository")


def test_verify_passes_and_detects_tampering(app: App):
    app.json("backup")
    verified = app.json("backup", "verify")
    assert verified["checked"] == ["server", "off-site"]
    assert app.json("status")["backups"]["verify"]["ok"]
    rows = app.rows()
    # Flip bytes in the middle of every data pack of the server's repository.
    app.server.ssh(
        f"for f in $(find /srv/{app.name}/backups/repository/data -type f); do "
        'printf "XXXXXXXX" | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) '
        "conv=notrunc status=none; done"
    )
    failed = app.cli("backup", "verify", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "nothing was restored" in failed.stderr or "damaged" in failed.stderr
    status = app.json("status")["backups"]
    assert status["verify"]["ok"] is False and status["last_good_verify"]["ok"]
    refused = app.cli("restore", check=False)
    assert refused.returncode == 1
    assert app.rows() == rows  # a damaged backup is never loaded
    assert app.fetch().status == 200
    # repair: a fresh repository on the server
    app.server.ssh(f"rm -rf /srv/{app.name}/backups/repository")
    app.json("setup")
    app.json("backup")


# ------------------------------------------------------------------ bad input and faults


@pytest.fixture(scope="module")
def mysql_app(server12: Server, tmp_path_factory) -> App:
    tmp = tmp_path_factory.mktemp("faults")
    app = make_app("mysql", server12, None, tmp, name="gb-faults")
    app.json("setup")
    app.cli("deploy")
    server12.ca.write_text(app.cli("ca").stdout)
    app.json("backup")
    return app


def test_unknown_backup_id_is_refused(mysql_app: App):
    result = mysql_app.cli("restore", "19990101-000000", check=False)
    assert result.returncode == 3
    assert "no backup '19990101-000000'" in result.stderr and "onebox backups" in result.stderr


def test_database_down_gives_a_clear_error(mysql_app: App):
    before = mysql_app.json("backups")["backups"]
    assert mysql_app.fetch("/.onebox/health").status == 200
    mysql_app.server.ssh("systemctl stop mariadb")
    try:
        health = mysql_app.fetch("/.onebox/health")  # the built-in check asks the database
        result = mysql_app.cli("backup", check=False)
        unit = f"onebox-{mysql_app.name}-backup.service"
        mysql_app.server.ssh(f"systemctl start {unit}", check=False)  # the timer's run
    finally:
        mysql_app.server.ssh("systemctl start mariadb")
    assert (health.status, health.body) == (503, "database unavailable\n")
    assert result.returncode == 1
    assert "reading the database's size failed: ERROR 2002" in result.stderr
    assert "MariaDB is not running" in result.stderr
    assert mysql_app.json("backups")["backups"] == before
    state = mysql_app.json("status")["backups"]
    assert state["backup"]["ok"] is False and state["backup_unit_failed"]
    status = mysql_app.cli("status").stdout
    assert "backup   FAILED at" in status and "the scheduled backup failed" in status
    assert "reading the database's size failed" in mysql_app.cli("logs").stdout


def test_full_disk_is_checked_before_starting(mysql_app: App):
    before = mysql_app.json("backups")["backups"]
    folder = f"/srv/{mysql_app.name}/backups"
    mysql_app.server.ssh(f"mount -t tmpfs -o size=2m,mode=0700 tmpfs {folder}")
    try:
        result = mysql_app.cli("backup", check=False)
    finally:
        mysql_app.server.ssh(f"umount {folder}")
    assert result.returncode == 1
    assert "not enough disk space to back up" in result.stderr
    assert "nothing was changed" in result.stderr
    assert mysql_app.json("backups")["backups"] == before


def test_backup_of_another_engine_is_refused(mysql_app: App):
    """The app moved from MariaDB to PostgreSQL: its MariaDB backups can't be loaded."""
    config = mysql_app.project / "onebox.toml"
    original = config.read_text()
    config.write_text(original.replace('engine = "mysql"', 'engine = "postgresql"'))
    try:
        mysql_app.json("setup")
        result = mysql_app.cli("restore", check=False)
        assert result.returncode == 3
        assert "holds a mysql database; this app uses postgresql" in result.stderr
    finally:
        config.write_text(original)
        mysql_app.json("setup")
    assert mysql_app.fetch().status == 200


def test_external_database_with_wrong_then_right_credentials(server12: Server, tmp_path):
    """[database] url: a database onebox does not run (here MariaDB over TCP, as a
    separate database host would be), with its password set as a secret."""
    server12.ssh(
        'mariadb -e "CREATE DATABASE IF NOT EXISTS extdb; '
        "CREATE USER IF NOT EXISTS 'extuser'@'127.0.0.1' IDENTIFIED BY 'right-pass'; "
        "GRANT ALL ON extdb.* TO 'extuser'@'127.0.0.1'; "
        "GRANT ALL ON onebox_verify_extdb.* TO 'extuser'@'127.0.0.1'\""
    )
    project = copy_project(ROOT / "examples" / "mvp", tmp_path / "ext")
    config = project / "onebox.toml"
    text = config.read_text().replace('name = "mvp"', 'name = "gb-ext"')
    text = text.replace('host = "sandbox:demo"', f'host = "{server12.host}"')
    text = text.replace('domain = ""', 'domain = "gb-ext.test"')
    external = 'engine = "mysql"\nurl = "mysql://extuser@127.0.0.1/extdb"'
    text = text.replace('engine = "sqlite"', external)
    config.write_text(text)
    onebox("env", "set", "DATABASE_PASSWORD=-", cwd=project, input="wrong-pass\n")
    wrong = onebox("setup", cwd=project, check=False)
    assert wrong.returncode == 1
    assert "connecting to the external database failed" in wrong.stderr
    assert "onebox env set DATABASE_PASSWORD" in wrong.stderr
    onebox("env", "set", "DATABASE_PASSWORD=-", cwd=project, input="right-pass\n")
    onebox("setup", cwd=project)
    onebox("deploy", cwd=project)
    tables = server12.ssh("mariadb -N extdb -e 'SHOW TABLES'")
    assert "guestbook_entry" in tables
    made = onebox_json("backup", cwd=project)["result"]
    verified = onebox_json("backup", "verify", cwd=project)["result"]
    assert verified["id"] == made["id"] and verified["tables"] >= 10


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_debian13_round_trip(engine: str, server13: Server, tmp_path):
    """Debian 13 ships MariaDB 11.8, PostgreSQL 17 and restic 0.18: the same round trip."""
    app = make_app(engine, server13, None, tmp_path, name=f"d13-{engine[:5]}")
    app.json("setup")
    app.cli("deploy")
    server13.ca.write_text(app.cli("ca").stdout)
    write_data(app, tmp_path)
    rows, media = app.rows(), app.media()
    made = app.json("backup")
    app.destroy()
    assert app.json("restore")["restored"] == made["id"]
    assert app.rows() == rows and app.media() == media
    assert app.json("backup", "verify", made["id"])["id"] == made["id"]


def test_failing_migration_on_mariadb_leaves_the_database_as_it_was(mysql_app: App):
    """MySQL's DDL is not transactional: the column the migration adds before it fails
    stays unless onebox puts the database back from the backup it took first."""
    dump = f"mariadb-dump --skip-dump-date --order-by-primary {mysql_app.db}"
    before = mysql_app.server.ssh(dump)
    migration = mysql_app.project / "guestbook" / "migrations" / "0099_half.py"
    migration.write_text(half_failing_migration("guestbook", "0001_initial", "entry", "mood"))
    try:
        failed = mysql_app.cli("deploy", check=False)
    finally:
        migration.unlink()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "this migration fails after changing the schema" in failed.stderr
    assert "the database was put back from backup" in failed.stderr
    assert mysql_app.server.ssh(dump) == before
    assert mysql_app.fetch().status == 200
    reasons = [b.get("reason") for b in mysql_app.json("backups")["backups"]]
    assert "predeploy" in reasons


def test_backup_credentials_are_kept_apart_from_the_app(mysql_app: App):
    mysql_app.cli("env", "set", "--backup", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE42")
    listed = mysql_app.json("env", "list", "--backup")["values"]
    assert listed == {"AWS_ACCESS_KEY_ID": "********"}
    path = f"/etc/onebox/{mysql_app.name}.backup.env"
    assert mysql_app.server.ssh(f"stat -c '%a %U' {path}").split() == ["600", "root"]
    assert "AKIAEXAMPLE42" in mysql_app.server.ssh(f"cat {path}")
    assert "AKIAEXAMPLE42" not in mysql_app.server.ssh(f"cat /etc/onebox/{mysql_app.name}.env")
    assert "AWS_ACCESS_KEY_ID" not in mysql_app.json("env", "list")["values"]

"""Hosts with roles: the example app on one practice server, its PostgreSQL on another
([servers] db), set up by one `onebox setup`, reached over TLS from the app's host only."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, Server, copy_project, edit, fetch, onebox, onebox_json, practice_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("hostsdb", "12", tmp_path_factory)


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("hostsweb", "12", tmp_path_factory)


@pytest.fixture(scope="module")
def project(tmp_path_factory, db: Server, web: Server) -> Path:
    root = copy_project(ROOT / "examples" / "mvp", tmp_path_factory.mktemp("hosts") / "mvp")
    config = root / "onebox.toml"
    edit(config, 'host = "sandbox:demo"', f'host = "{web.host}"')
    edit(config, 'user = "onebox"\n', "")  # (fresh servers: setup logs in as root first)
    edit(config, 'engine = "sqlite"', 'engine = "postgresql"')
    config.write_text(config.read_text() + f'\n[servers]\ndb = "{db.host}"\n')
    return root


@pytest.fixture(scope="module")
def deployed(project: Path, db: Server, web: Server) -> dict:
    setup = onebox_json("setup", cwd=project)["result"]
    assert setup["host"] == web.host
    database = setup["database_host"]
    assert database["host"] == db.host
    assert "database host (PostgreSQL over TLS, for the app hosts)" in database["changed"]
    assert "the database host's certificate and password" in setup["changed"]
    assert 'user = "onebox"' in (project / "onebox.toml").read_text()  # both locked down
    result = onebox_json("deploy", cwd=project)["result"]
    web.ca.write_text(onebox("ca", cwd=project).stdout)
    return result


def psql(db: Server, query: str) -> str:
    return db.ssh(f"cd / && runuser -u postgres -- psql -X -At -d mvp -c {shlex.quote(query)}")


def post_entry(url: str, ca: Path, jar: Path, name: str, message: str) -> int:
    page = fetch(url, ca, args=("-c", str(jar))).body
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = ("-F", f"csrfmiddlewaretoken={token}", "-F", f"name={name}", "-F", f"message={message}")
    return fetch(url, ca, args=("-b", str(jar), "-e", url, *form)).status


def test_the_app_stores_its_data_on_the_database_host(deployed, db, web, tmp_path):
    assert post_entry(deployed["url"], web.ca, tmp_path / "jar", "Ada", "on the db host") == 302
    assert "<strong>Ada</strong>: on the db host" in fetch(deployed["url"], web.ca).body
    assert psql(db, "select name, message from guestbook_entry") == "Ada|on the db host\n"
    # The app's connections come from its host, encrypted.
    sessions = psql(
        db,
        "select client_addr, ssl from pg_stat_activity join pg_stat_ssl using (pid) "
        "where datname = 'mvp' and usename = 'mvp'",
    )
    assert sessions and all(line == f"{web.address}|t" for line in sessions.split())
    # Nothing of the database lives on the app's host.
    server = web.ssh("dpkg-query -W -f='${Status}' postgresql 2>&1", check=False)
    assert "install ok installed" not in server


def test_the_database_is_reachable_from_the_app_host_only(deployed, db, web):
    probe = f"timeout 5 bash -c 'echo > /dev/tcp/{db.address}/5432' && echo open || echo shut"
    assert web.ssh(probe).strip() == "open"
    outside = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=20)
    assert outside.stdout.strip() == "shut"  # (this machine: the practice network's gateway)
    rules = db.ssh("nft list table inet onebox")
    assert f"ip saddr {web.address} tcp dport 5432 accept" in rules
    assert "tcp dport 22 accept" in rules and "443" not in rules  # no web server on the db host
    hba = db.ssh("cat /etc/postgresql/15/main/pg_hba.conf")
    assert hba.startswith("# onebox mvp begin")
    assert f'hostssl "mvp","onebox_verify_mvp" "mvp" {web.address}/32 scram-sha-256' in hba


def test_the_app_host_checks_the_database_certificate(deployed, db, web):
    secrets = web.ssh("cat /etc/onebox/mvp.env")
    assert 'PGSSLMODE="verify-full"' in secrets
    assert "sslmode=verify-full&sslrootcert=/srv/mvp/database-ca.crt" in secrets
    password = re.search(r'^DATABASE_PASSWORD="(.+)"$', secrets, re.M).group(1)
    assert password == db.ssh("cat /etc/onebox/db-host/mvp.password")
    assert db.ssh("stat -c '%a %U' /etc/onebox/db-host/ca.key").split() == ["600", "root"]
    assert password not in db.ssh("ps -eo args") + web.ssh("ps -eo args")
    connect = (
        f"PGPASSWORD={shlex.quote(password)} PGSSLMODE=verify-full PGSSLROOTCERT={{ca}} "
        f"psql -X -At -h {db.address} -U mvp -d mvp -c 'select 1'"
    )
    assert web.ssh(connect.format(ca="/srv/mvp/database-ca.crt")).strip() == "1"
    # Another CA's certificate (the system's) does not vouch for it: refused.
    refused = web.ssh(connect.format(ca="/etc/ssl/certs/ca-certificates.crt") + " 2>&1", False)
    assert "certificate verify failed" in refused
    # Without TLS, the database host admits nobody.
    plain = web.ssh(connect.format(ca="x").replace("verify-full", "disable") + " 2>&1", False)
    assert "no pg_hba.conf entry" in plain and "no encryption" in plain


def test_backup_verify_and_restore_of_the_database_host(project, deployed, db):
    backup = onebox_json("backup", cwd=project)["result"]
    assert backup["manifest"]["engine"] == "postgresql"
    psql(db, "delete from guestbook_entry")
    verified = onebox("backup", "verify", cwd=project)
    assert "restored identical" in verified.stdout
    restored = onebox("restore", backup["id"], cwd=project, input="")
    assert f"restored backup {backup['id']}" in restored.stdout
    assert psql(db, "select name from guestbook_entry") == "Ada\n"


def test_setup_again_changes_nothing_on_either_host(project):
    again = onebox_json("setup", cwd=project)["result"]
    assert again["changed"] == [] and again["database_host"]["changed"] == []


def test_a_database_host_needs_postgresql(project, tmp_path):
    config = project / "onebox.toml"
    original = config.read_text()
    try:
        config.write_text(original.replace('engine = "postgresql"', 'engine = "mysql"'))
        result = onebox("setup", "--dry-run", cwd=project, check=False)
        assert result.returncode != 0
        assert "[servers] db sets up PostgreSQL on its own host: set [database] engine" in (
            result.stderr
        )
    finally:
        config.write_text(original)

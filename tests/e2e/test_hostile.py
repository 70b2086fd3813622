"""Issue 11's cases on real practice servers: what a hostile app, a clumsy user or a
fault did to onebox before, each tried again as it was found.

An app of the test's own ("hostile", SQLite) on the shared Debian 12 server plays the
attacker: code running as the app's user (a Django RCE, a malicious dependency). A fresh
server of its own proves what happens before and during a first setup.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import (
    ROOT,
    Server,
    copy_project,
    fetch,
    onebox,
    onebox_background,
    onebox_json,
    practice_server,
)

pytestmark = pytest.mark.e2e

APP = "hostile"
KEY = f"/etc/onebox/{APP}.backup-key"


@dataclass
class App:
    name: str
    project: Path
    server: Server

    @property
    def domain(self) -> str:
        return f"{self.name}.test"

    def cli(self, *args: str, check: bool = True, input: str | None = None):
        return onebox(*args, cwd=self.project, check=check, input=input)

    def json(self, *args: str, check: bool = True) -> dict:
        return onebox_json(*args, cwd=self.project, check=check)

    def status_code(self, path: str = "/") -> int:
        resolve = f"{self.domain}:443:{self.server.address}"
        return fetch(f"https://{self.domain}{path}", self.server.ca, resolve=resolve).status

    def as_app(self, command: str, check: bool = False) -> str:
        """A shell command as the app's user: what code the app runs could do."""
        return self.server.ssh(f"runuser -u {self.name} -- sh -c {shlex.quote(command)}", check)


def make_project(server: Server, tmp: Path, name: str, extra: str = "", engine: str = "") -> Path:
    project = copy_project(ROOT / "examples" / "mvp", tmp / name)
    config = project / "onebox.toml"
    text = config.read_text().replace('name = "mvp"', f'name = "{name}"')
    text = text.replace('host = "sandbox:demo"', f'host = "{server.host}"')
    text = text.replace('domain = ""', f'domain = "{name}.test"')
    if engine:
        text = text.replace('engine = "sqlite"', f'engine = "{engine}"')
    config.write_text(text + extra)
    return project


@pytest.fixture(scope="module")
def app(server12: Server, tmp_path_factory) -> App:
    project = make_project(server12, tmp_path_factory.mktemp(APP), APP)
    onebox("setup", cwd=project)
    onebox("deploy", cwd=project)
    server12.ca.write_text(onebox("ca", cwd=project).stdout)
    return App(name=APP, project=project, server=server12)


# --------------------------------------------------------------------------- 1. backups


# As the app's user: in every staging folder of onebox's beside the database, the dump
# copy is swapped for a link to root's backup key once SQLite has written it (its
# journal gone), while the program that made it still reads its checksums through its
# open file: whoever opens the copy by name afterwards gets the key.
ATTACKER = r"""
import glob, os, time
end = time.time() + 240
while time.time() < end:
    for folder in glob.glob("/srv/APP/shared/db/.onebox-*"):
        copy = folder + "/db.sqlite3"
        try:
            if os.path.islink(copy) or os.lstat(copy).st_size == 0:
                continue
            if os.path.exists(copy + "-journal"):
                continue
            os.rename(copy, folder + "/moved")
            os.symlink("KEY", copy)
        except OSError:
            pass
    time.sleep(0.0005)
""".replace("APP", APP).replace("KEY", KEY)

# Rows enough that reading the checksums of the copy takes a while (the attacker's window).
FILLER = (
    "CREATE TABLE IF NOT EXISTS filler(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL "
    "SELECT i + 1 FROM c WHERE i < 100000) INSERT INTO filler SELECT randomblob(16) FROM c;"
)


def test_the_app_racing_backups_restores_and_verifies_gets_nothing(app: App, tmp_path):
    """Root once wrote, read and chowned the dump by name in a folder of the app's: an app
    that swapped it for a link to root's backup key had the key backed up, overwritten,
    or handed to it. Now the dump crosses in pipes, and staging is root's alone."""
    before = app.server.ssh(f"sha256sum {KEY}; stat -c %U:%a {KEY}")
    app.as_app(f"sqlite3 /srv/{APP}/shared/db/db.sqlite3 {shlex.quote(FILLER)}", check=True)
    app.server.ssh(
        f"systemd-run --unit=onebox-test-attacker --uid={APP} --gid={APP} "
        f"/usr/bin/python3 -c {shlex.quote(ATTACKER)}"
    )
    try:
        for command in (["backup"], ["backup", "verify"], ["backup"], ["restore"]):
            app.cli(*command, check=False)
            app.cli("backup", "verify", check=False)
    finally:
        app.server.ssh("systemctl stop onebox-test-attacker", check=False)
        app.as_app(f"sqlite3 /srv/{APP}/shared/db/db.sqlite3 'DROP TABLE IF EXISTS filler;'")
    assert app.server.ssh(f"sha256sum {KEY}; stat -c %U:%a {KEY}") == before
    assert "root:600" in before
    key = app.server.ssh(f"cat {KEY}").strip()
    assert app.as_app(f"cat {KEY} 2>/dev/null") == ""
    leaked = app.server.ssh(f"grep -rlF {shlex.quote(key)} /srv/{APP}/shared || true")
    assert leaked.strip() == ""
    # each backup that was taken holds a database, never the key
    for backup in app.json("backups")["result"]["backups"]:
        pulled = tmp_path / f"{backup['id']}.sqlite3"
        app.cli("db", "pull", str(pulled), "--backup", backup["id"])
        data = pulled.read_bytes()
        assert data.startswith(b"SQLite format 3\0") and key.encode() not in data
    # and with nobody racing, backups work as ever
    app.cli("backup")
    app.cli("backup", "verify")
    checks = app.json("audit", check=False)["result"]["checks"]
    staged = next(c for c in checks if c["name"].startswith("backups are staged"))
    assert staged["status"] == "pass", staged


# --------------------------------------------------------------------------- 2. Caddy

REACH_ADMIN = (
    "import socket\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', 2019), timeout=2).close(); print('tcp open')\n"
    "except OSError as e: print('tcp', e)\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n"
    "    s.connect('/run/caddy/admin.sock'); print('socket open')\n"
    "except OSError as e: print('socket', e)\n"
)


def test_the_app_cannot_reach_caddys_admin_api(app: App):
    """On 127.0.0.1:2019 the app's user could PUT a config serving Caddy's CA key."""
    as_user = app.as_app(f"python3 -c {shlex.quote(REACH_ADMIN)}")
    in_app = app.cli("manage", "--", "shell", "-c", REACH_ADMIN).stdout  # the app's sandbox
    for output in (as_user, in_app):
        assert "tcp" in output and "open" not in output, output
    # root (and Caddy's own reload) still reach it
    config = app.server.ssh(
        "curl -sf -H 'Host: ' --unix-socket /run/caddy/admin.sock http://caddy/config/"
    )
    assert json.loads(config)["apps"]["http"]
    checks = app.json("audit", check=False)["result"]["checks"]
    admin = next(c for c in checks if c["name"] == "the app cannot reach Caddy's admin API")
    unit = next(c for c in checks if c["name"] == "the app's unit runs nothing as root")
    assert admin["status"] == "pass" and unit["status"] == "pass", (admin, unit)


CADDY_KEY = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.key"


def test_caddy_serves_no_link_the_app_made(app: App):
    """Caddy serves static and media files as a user that reads its own private keys: a
    link the app planted among them handed Caddy's CA key to anyone."""
    app.as_app(f"ln -sfn {CADDY_KEY} /srv/{APP}/shared/media/leak.txt", check=True)
    resolve = f"{app.domain}:443:{app.server.address}"
    leak = fetch(f"https://{app.domain}/media/leak.txt", app.server.ca, resolve=resolve)
    assert leak.status != 200 and "PRIVATE KEY" not in leak.body, leak
    app.server.ssh(f"rm -f /srv/{APP}/shared/media/leak.txt")

    config = app.project / "onebox.toml"
    settings = config.read_text()
    planted = f'release = ["ln -s {CADDY_KEY} staticfiles/leak.txt"]'
    config.write_text(settings.replace("release = []", planted))
    try:
        deployed = app.cli("deploy")
    finally:
        config.write_text(settings)
    assert "removed from the static files, as links out of the release: leak.txt" in (
        deployed.stderr
    )
    leak = fetch(f"https://{app.domain}/static/leak.txt", app.server.ca, resolve=resolve)
    assert leak.status == 404 and "PRIVATE KEY" not in leak.body

    config.write_text(settings.replace("vars = { ", 'vars = { MEDIA_ROOT = "/var/lib/caddy", '))
    try:
        refused = app.cli("deploy", check=False)
    finally:
        config.write_text(settings)
    assert refused.returncode == 3 and "MEDIA_ROOT is /var/lib/caddy" in refused.stderr
    assert app.status_code() == 200
    checks = {c["name"]: c for c in app.json("audit", check=False)["result"]["checks"]}
    for name in (
        "Caddy follows no link the app made in its shared folder",
        "static files hold no link out of the release",
    ):
        assert checks[name]["status"] == "pass", checks[name]


# --------------------------------------------------------------------------- 4. SQL

PASSWORDS = {
    "postgresql": "x' SUPERUSER --",
    "mysql": "pa'ss\\'; GRANT ALL ON *.* TO 'q_mysql'@'localhost' WITH GRANT OPTION; -- ",
}


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_database_password_with_quotes_stays_a_password(engine, server12: Server, tmp_path):
    name = f"q-{engine}"
    project = make_project(server12, tmp_path, name, engine=engine)
    password = PASSWORDS[engine]
    onebox("env", "set", "DATABASE_PASSWORD=-", cwd=project, input=password + "\n")
    setup = onebox("--json", "setup", cwd=project, check=False)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert password not in setup.stdout + setup.stderr
    role = name.replace("-", "_")
    secret = shlex.quote(password)
    if engine == "postgresql":
        superuser = server12.ssh(
            f"cd / && runuser -u postgres -- psql -Atc "
            f"\"SELECT rolsuper FROM pg_roles WHERE rolname = '{role}'\""
        )
        assert superuser.strip() == "f"
        login = f"PGPASSWORD={secret} psql -h localhost -U {role} -d {role} -Atc 'SELECT 1'"
    else:
        grants = server12.ssh(f"mariadb -N -e \"SHOW GRANTS FOR '{role}'@'localhost'\"")
        assert "ON *.*" not in grants.replace("GRANT USAGE ON *.*", ""), grants
        login = f"MYSQL_PWD={secret} mariadb -h localhost -u {role} {role} -N -e 'SELECT 1'"
    assert server12.ssh(login).strip() == "1"


# --------------------------------------------------------------------------- 9, 10


def wait_for(check, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_a_sigterm_to_gunicorn_does_not_leave_the_site_down(app: App):
    unit = f"onebox-{APP}@{app.json('status')['result']['live_slot']}.service"
    app.server.ssh(f"kill -TERM $(systemctl show -p MainPID --value {unit})")
    assert wait_for(lambda: app.status_code() == 200, 30)
    assert app.server.ssh(f"systemctl is-active {unit}").strip() == "active"


def test_status_and_deploy_say_when_visitors_do_not_get_the_site(app: App):
    app.server.ssh("systemctl stop caddy")
    down = app.cli("status", check=False)
    assert down.returncode == 1 and "Caddy is not running" in down.stdout
    deployed = app.cli("deploy")  # starts it, then checks through it
    assert "start Caddy (it was not running)" in deployed.stderr
    assert "live at https://" in deployed.stdout and app.status_code() == 200

    app.cli("maintenance", "on")
    try:
        down = app.cli("status", check=False)
        assert down.returncode == 1 and "maintenance mode is on" in down.stdout
        deployed = app.cli("deploy")  # the user's own choice: said, and exit 0
        assert "live at" not in deployed.stdout
        assert "but: maintenance mode is on" in deployed.stdout
    finally:
        app.cli("maintenance", "off")

    live = app.server.ssh(f"readlink -f /srv/{APP}/current").strip()
    app.server.ssh(f"rm -rf {live}")
    down = app.cli("status", check=False)
    assert down.returncode == 1 and "is gone" in down.stdout
    app.cli("deploy")
    assert app.cli("status").returncode == 0

    for host in (app.domain, app.server.address):  # the site's name, and any other
        redirect = subprocess.run(
            [
                "curl",
                "-sI",
                "--max-time",
                "10",
                "-H",
                f"Host: {host}",
                f"http://{app.server.address}/x",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert redirect.startswith("HTTP/1.1 308") and "server:" not in redirect.lower(), redirect
        assert f"location: https://{host}/x" in redirect.lower()


def test_interrupting_the_cli_says_what_the_server_does(app: App):
    process = onebox_background("deploy", cwd=app.project)
    assert process.stdout is not None
    for line in process.stdout:
        if "unpack release" in line:
            break
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert "goes on to its end on the server" in output, output
    deploying = f"systemctl list-units --no-legend 'onebox-{APP}-deploy-*'"
    assert wait_for(lambda: app.server.ssh(deploying).strip() == "", 120)
    assert app.cli("status").returncode == 0


def test_a_deploy_cancelled_from_another_terminal_leaves_the_live_release(app: App):
    live = app.json("status")["result"]["release"]["release_id"]
    config = app.project / "onebox.toml"
    settings = config.read_text()
    config.write_text(settings.replace("build = []", 'build = ["sleep 8"]'))
    try:
        deploying = onebox_background("deploy", cwd=app.project)
        running = f"systemctl list-units --no-legend 'onebox-{APP}-deploy-*'"
        assert wait_for(lambda: app.server.ssh(running).strip() != "", 60)
        cancelled = app.cli("cancel")
        output, _ = deploying.communicate(timeout=300)
    finally:
        config.write_text(settings)
    assert ": cancelled" in cancelled.stdout and "live release keeps serving" in cancelled.stdout
    assert deploying.returncode == 1 and "the deploy was cancelled" in output, output
    assert app.json("status")["result"]["release"]["release_id"] == live
    assert app.server.ssh(f"ls /srv/{APP}/releases").split()[-1] == live
    assert app.status_code() == 200
    nothing = app.cli("cancel", check=False)
    assert nothing.returncode == 3 and f"no deploy of {APP} is running" in nothing.stderr


# --------------------------------------------------------------------------- 8. env


def test_env_values_are_kept_as_systemd_reads_them(app: App):
    app.cli("env", "set", "API_KEY=-", input="sekrit\r\n")
    # a value with a CR inside, written before onebox refused them: left as it is
    app.server.ssh(f"printf 'CR_KEY=\"sek\\rrit\"\\n' >> /etc/onebox/{APP}.env")
    app.cli("env", "set", "OTHER=1")
    values = app.json("env", "list", "--reveal")["result"]["values"]
    assert values["API_KEY"] == "sekrit" and values["CR_KEY"] == "sek\rrit"
    assert set(values) >= {"API_KEY", "CR_KEY", "OTHER"} and "rit" not in values
    for pair, value, said in (
        ("BAD=-", "a\rb", "control character"),
        ("ÄPFEL=x", None, "not a variable name"),
        ("HUGE=-", "x" * 200_000, "MAX_ARG_STRLEN"),  # exec's limit for one variable
    ):
        refused = app.cli("env", "set", pair, check=False, input=value)
        assert refused.returncode == 3 and said in refused.stderr, refused.stderr
    app.cli("env", "unset", "CR_KEY", "OTHER")
    assert "System check identified no issues" in app.cli("manage", "--", "check").stdout


# --------------------------------------------------------------------------- smaller ones


def test_a_full_disk_is_said_plainly_and_the_site_keeps_serving(app: App):
    releases = f"/srv/{APP}/releases"
    app.server.ssh(
        "mkdir -p /run/onebox-test-full && mount -t tmpfs -o size=32m tmpfs /run/onebox-test-full"
        f" && cp -a {releases}/. /run/onebox-test-full/ && mount --bind /run/onebox-test-full "
        f"{releases} && (dd if=/dev/zero of={releases}/fill bs=64k 2>/dev/null; true)"
        f" && truncate -s -8K {releases}/fill"
    )
    try:
        full = app.cli("deploy", check=False)
    finally:
        app.server.ssh(f"umount {releases}; umount /run/onebox-test-full", check=False)
    assert full.returncode == 1, full.stderr
    assert "not enough disk space for the release" in full.stderr
    assert "internal error" not in full.stderr and "Traceback" not in full.stderr
    assert app.status_code() == 200


# --------------------------------------------------------------------------- 6, 11


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("fresh12", "12", tmp_path_factory)


def test_commands_before_setup_an_interrupted_setup_and_its_rerun(fresh: Server, tmp_path):
    """Before: six commands ahead of the first setup got this machine banned by the
    fail2ban that setup installs; a second setup meanwhile failed on apt's lock; and a
    setup killed after its firewall step, rerun, said "nothing changed" while the armed
    undo took the firewall down a minute later."""
    project = make_project(fresh, tmp_path, "fresh", extra="\n[security]\nconfirm_within = 60\n")
    for number in range(6):
        onebox("env", "set", f"SETTING_{number}=x", cwd=project)
    setup = onebox_background("setup", cwd=project)
    assert setup.stdout is not None
    # a second setup meanwhile (the first is installing packages): told who holds it
    running = "systemctl list-units --no-legend 'onebox-fresh-setup-*'"
    assert wait_for(lambda: fresh.ssh(running).strip() != "", 120)
    second = onebox("setup", cwd=project, check=False)
    assert second.returncode == 7 and "setup of fresh by" in second.stderr, second.stderr
    for line in setup.stdout:
        if re.search(r"[✓·] firewall", line):
            setup.kill()  # the client dies; the server's setup goes on, its guards armed
            killed = time.monotonic()
            break
    setup.wait()
    assert setup.returncode == -signal.SIGKILL, "setup ended before its firewall step"
    assert wait_for(
        lambda: not fresh.ssh("systemctl list-units --no-legend 'onebox-fresh-setup-*'").strip(),
        300,
    )
    checks = onebox_json("audit", cwd=project, check=False)["result"]["checks"]
    confirmed = next(c for c in checks if c["name"] == "setup's changes are confirmed")
    assert confirmed["status"] == "fail" and "firewall" in confirmed["detail"], confirmed
    status = onebox("status", cwd=project, check=False)
    assert status.returncode == 1 and "not confirmed" in status.stdout

    rerun = onebox("setup", cwd=project)
    assert "unconfirmed changes of an earlier setup: firewall" in rerun.stderr, rerun.stderr
    assert "a new SSH connection as onebox gets in" in rerun.stderr
    time.sleep(max(0.0, killed + 70 - time.monotonic()))  # past the first run's undo
    assert "policy drop" in fresh.ssh("nft list table inet onebox")
    assert "permitrootlogin no" in fresh.ssh("sshd -T")
    assert fresh.ssh("ls /var/lib/onebox/guards 2>/dev/null").strip() == ""
    gateway = fresh.address.rsplit(".", 1)[0] + ".1"
    assert gateway not in fresh.ssh("fail2ban-client status sshd")
    checks = onebox_json("audit", cwd=project, check=False)["result"]["checks"]
    confirmed = next(c for c in checks if c["name"] == "setup's changes are confirmed")
    assert confirmed["status"] == "pass", confirmed


def test_a_failed_deploy_takes_its_new_virtualenv_with_it(app: App):
    venvs = f"ls /srv/{APP}/venvs"
    before = app.server.ssh(venvs).split()
    requirements = app.project / "requirements.txt"
    original = requirements.read_text()
    config = app.project / "onebox.toml"
    settings = config.read_text()
    requirements.write_text(original + "six\n")  # a new lock: a new virtualenv
    config.write_text(settings.replace("build = []", 'build = ["false"]'))
    try:
        failed = app.cli("deploy", check=False)
    finally:
        requirements.write_text(original)
        config.write_text(settings)
    assert failed.returncode == 1 and "build command `false`" in failed.stderr
    assert app.server.ssh(venvs).split() == before


def test_a_practice_server_rebooted_from_inside_starts_again(fresh: Server):
    name = fresh.name
    fresh.ssh("systemctl reboot", check=False)

    def running() -> bool:
        boxes = onebox_json("sandbox", "list")["result"]
        return next(box for box in boxes if box["name"] == name)["running"]

    assert wait_for(lambda: not running(), 60)  # nspawn ends with the reboot
    started = onebox("sandbox", "start", name)
    assert f"practice server {name} is up at {fresh.address}" in started.stdout
    assert fresh.ssh("systemctl is-system-running --wait", check=False).strip() in (
        "running",
        "degraded",
    )
    onebox("sandbox", "stop", name)
    listed = next(b for b in onebox_json("sandbox", "list")["result"] if b["name"] == name)
    assert not listed["running"]
    onebox("sandbox", "start", name)

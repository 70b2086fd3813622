"""End-to-end fixtures: real practice servers, the real onebox CLI, real SSH and HTTPS.

Servers are created once per test session and destroyed at its end. Names carry the
process id, so a server left behind by a killed run never collides with this one
(and `onebox sandbox create` cleans up what a dead one left).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from onebox import sandbox

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    if os.geteuid() != 0 or platform.system() != "Linux" or not shutil.which("systemd-nspawn"):
        if os.environ.get("CI"):  # CI proves the features: never a silent skip there
            raise pytest.UsageError("CI: practice servers need root, Linux and systemd-nspawn")
        skip = pytest.mark.skip(reason="practice servers need root, Linux and systemd-nspawn")
        for item in items:
            if "e2e" in str(item.fspath):
                item.add_marker(skip)


def onebox(
    *args: str,
    cwd: Path | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = 900,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the onebox CLI exactly as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "onebox", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"onebox {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def onebox_background(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """The CLI started, not waited for: its output (stdout and stderr) to read line by
    line, for a test that acts while it runs (kills it after a step, runs another)."""
    return subprocess.Popen(
        [sys.executable, "-m", "onebox", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def onebox_json(*args: str, cwd: Path | None = None, check: bool = True) -> dict:
    result = onebox("--json", *args, cwd=cwd, check=check)
    return json.loads(result.stdout)


@dataclass
class Server:
    name: str
    address: str
    debian: str
    ca: Path

    @property
    def host(self) -> str:
        return f"sandbox:{self.name}"

    def ssh(self, command: str, check: bool = True) -> str:
        """Run a shell command as root on the server. Through its console, not SSH: once
        onebox setup has hardened it, root cannot log in over SSH (and must not)."""
        result = subprocess.run(
            sandbox.load(self.name).console(command),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"on {self.name}: {command!r}: {result.stderr}")
        return result.stdout


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first `old` in a file, which must hold it."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def half_failing_migration(app: str, after: str, model: str, field: str) -> str:
    """A migration that adds a column, then fails: on MySQL (DDL is not transactional)
    the column stays unless onebox puts the database back from its backup."""
    return (
        "from django.db import migrations, models\n\n\n"
        "def boom(apps, schema_editor):\n"
        "    raise RuntimeError('this migration fails after changing the schema')\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [('{app}', '{after}')]\n"
        "    operations = [\n"
        f"        migrations.AddField('{model}', '{field}', "
        "models.CharField(max_length=9, null=True)),\n"
        "        migrations.RunPython(boom),\n"
        "    ]\n"
    )


def use_deploy_user(config: Path) -> None:
    """Log in as onebox's deploy user (the server may be hardened by an earlier test's
    setup already; on a fresh one, onebox falls back to root for the first setup)."""
    text = config.read_text()
    if not re.search(r'^user = "onebox"', text, re.MULTILINE):
        config.write_text(text.replace("[server]\n", '[server]\nuser = "onebox"\n', 1))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


def fetch(
    url: str, ca: Path, *, resolve: str | None = None, args: tuple[str, ...] = ()
) -> Response:
    """GET (or what args say) with curl, trusting the server's private CA."""
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--max-time",
        "20",
        "--cacert",
        str(ca),
        "--dump-header",
        "-",
        *args,
        url,
    ]
    if resolve:
        command[1:1] = ["--resolve", resolve]
    out = subprocess.run(command, capture_output=True, timeout=30)  # bytes: keep the \r\n
    if out.returncode != 0:
        raise AssertionError(f"curl {url}: {out.stderr.decode(errors='replace')}")
    head, _, body = out.stdout.decode(errors="replace").partition("\r\n\r\n")
    while re.match(r"HTTP/\S+ (100|301|302)", head) and "\r\n\r\n" in body and "-L" in args:
        head, _, body = body.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Response(status=int(lines[0].split()[1]), headers=headers, body=body)


def _create(name: str, debian: str, tmp: Path) -> Server:
    onebox("sandbox", "create", name, "--debian", debian, timeout=1200)
    data = onebox_json("sandbox", "list")["result"]
    box = next(b for b in data if b["name"] == name)
    return Server(name=name, address=box["address"], debian=debian, ca=tmp / f"{name}-ca.pem")


def practice_server(prefix: str, debian: str, tmp_path_factory) -> Iterator[Server]:
    """A practice server for the session, destroyed at its end."""
    name = f"{prefix}-{os.getpid()}"
    try:
        yield _create(name, debian, tmp_path_factory.mktemp("ca"))
    finally:  # also when the fixture that wraps this generator closes it early
        onebox("sandbox", "destroy", name, check=False)


@pytest.fixture(scope="session", params=["12", "13"], ids=["debian12", "debian13"])
def server(request, tmp_path_factory) -> Iterator[Server]:
    yield from practice_server(f"e2e{request.param}", request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def server12(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("apps12", "12", tmp_path_factory)


@pytest.fixture(scope="session")
def server13(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("apps13", "13", tmp_path_factory)


S3_PORT = 9000
# On the S3 host: a bucket's objects under a prefix, copied into a folder (for grep).
S3_FETCH = f"""import pathlib, shutil, sys
import boto3
bucket, prefix, target = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:{S3_PORT}", region_name="us-east-1",
                  aws_access_key_id="x", aws_secret_access_key="x")
shutil.rmtree(target, ignore_errors=True)
pathlib.Path(target).mkdir()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for item in page.get("Contents", []):
        s3.download_file(bucket, item["Key"], target + "/" + item["Key"].replace("/", "_"))
"""
S3_KEYS = {"AWS_ACCESS_KEY_ID": "onebox-test", "AWS_SECRET_ACCESS_KEY": "onebox-test-secret"}


@pytest.fixture(scope="session")
def offsite(tmp_path_factory):
    """The host of the off-site repositories (test_data.py) and of the media bucket
    (test_hosts.py), a practice server shared by both: SFTP, and an S3-compatible server
    (moto's server mode, from PyPI: the S3 API over HTTP, objects kept in its memory; no
    S3 server is packaged in Debian 12). /opt/s3/bin/python has boto3, for the tests."""
    servers = practice_server("offsite", "12", tmp_path_factory)
    server = next(servers)
    try:
        server.ssh(
            "apt-get install -y -qq python3-venv >/dev/null && python3 -m venv /opt/s3 && "
            "/opt/s3/bin/pip install -q 'moto[server]==5.2.5' && "
            f"systemd-run --quiet --unit s3 /opt/s3/bin/moto_server -H 0.0.0.0 -p {S3_PORT} && "
            f"cat > /opt/s3/fetch.py <<'EOF'\n{S3_FETCH}EOF"
        )
        yield server
    finally:
        servers.close()  # (its own finally destroys the server)


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns(
            "__pycache__", "db.sqlite3", "media", "staticfiles", "collected", "uploads"
        ),
    )
    return target

"""The example app on fresh Debian 12 and 13 practice servers, as a user would run it."""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from onebox.agent import entry_script

from .conftest import ROOT, Server, copy_project, fetch, onebox, onebox_json
from .podman import Podman, playable

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(ROOT / "examples" / "mvp", tmp_path_factory.mktemp("mvp") / "mvp")


@pytest.fixture(scope="module")
def deployed(server: Server, project: Path) -> dict:
    first = onebox_json("setup", "--host", server.host, cwd=project)["result"]
    assert "packages" in first["changed"] and "caddy" in first["changed"]
    result = onebox_json("deploy", "--host", server.host, cwd=project)["result"]
    server.ca.write_text(onebox("ca", "--host", server.host, cwd=project).stdout)
    return result


def test_setup_twice_changes_nothing(server, project, deployed):
    unit = server.ssh("cat /etc/systemd/system/onebox-mvp@.service")
    dry = onebox("setup", "--dry-run", "--host", server.host, cwd=project)
    assert "dry run: nothing was done on" in dry.stdout
    assert " · systemd units (unchanged)" in dry.stdout  # (the dry run's plan: docs/dry-run.md)
    plan = onebox_json("setup", "--dry-run", "--host", server.host, cwd=project)["result"]["plan"]
    assert [step["name"] for step in plan if step["changed"]] == []  # it predicts the run below
    assert "ONEBOX_WSGI=mvp.wsgi:application" in unit
    assert server.ssh("cat /etc/systemd/system/onebox-mvp@.service") == unit
    again = onebox("setup", "--host", server.host, cwd=project)
    assert "already set up, nothing changed" in again.stdout
    assert onebox_json("setup", "--host", server.host, cwd=project)["result"]["changed"] == []


def test_page_over_https_through_caddy(server, deployed):
    assert deployed["url"] == f"https://{server.address}/"
    page = fetch(deployed["url"], server.ca)
    assert page.status == 200
    assert "<h1>Guestbook</h1>" in page.body
    assert page.headers["strict-transport-security"].startswith("max-age=")
    plain = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            f"http://{server.address}/",
        ],
        capture_output=True,
        text=True,
    )
    assert plain.stdout == f"308 https://{server.address}/"


def test_static_file_has_long_cache_headers(server, deployed):
    page = fetch(deployed["url"], server.ca).body
    css = re.search(r'href="(/static/guestbook/style\.[0-9a-f]{12}\.css)"', page).group(1)
    response = fetch(f"https://{server.address}{css}", server.ca)
    assert response.status == 200
    assert "max-age=31536000" in response.headers["cache-control"]
    assert "immutable" in response.headers["cache-control"]
    assert "font-family" in response.body


def test_form_post_is_stored_and_media_served(server, deployed, tmp_path):
    jar, upload = tmp_path / "cookies", tmp_path / "note.txt"
    upload.write_text("an attachment served by Caddy\n")
    page = fetch(deployed["url"], server.ca, args=("-c", str(jar))).body
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    posted = fetch(
        deployed["url"],
        server.ca,
        args=(
            "-b",
            str(jar),
            "-e",
            deployed["url"],
            "-F",
            f"csrfmiddlewaretoken={token}",
            "-F",
            "name=Ada",
            "-F",
            f"message=signed on Debian {server.debian}",
            "-F",
            f"attachment=@{upload}",
        ),
    )
    assert posted.status == 302
    page = fetch(deployed["url"], server.ca).body
    assert f"<strong>Ada</strong>: signed on Debian {server.debian}" in page
    media = re.search(r'href="(/media/attachments/[^"]+)"', page).group(1)
    response = fetch(f"https://{server.address}{media}", server.ca)
    assert response.status == 200 and response.body == "an attachment served by Caddy\n"
    rows = server.ssh(
        "sqlite3 /srv/mvp/shared/db/db.sqlite3 'select name, message from guestbook_entry'"
    )
    assert f"Ada|signed on Debian {server.debian}" in rows


def test_secrets_file_is_private_and_off_the_process_list(server, deployed):
    assert server.ssh("stat -c '%a %U %G' /etc/onebox/mvp.env").split() == ["600", "root", "root"]
    secret = re.search(r'^SECRET_KEY="(.+)"$', server.ssh("cat /etc/onebox/mvp.env"), re.M).group(1)
    assert len(secret) >= 50
    assert secret not in server.ssh("ps -eo args")
    assert secret not in server.ssh("journalctl --no-pager -o cat")
    assert server.ssh("stat -c '%U' /srv/mvp/current/mvp/settings.py").strip() == "root"


def test_manage_runs_in_the_release(server, project, deployed):
    check = onebox(
        "manage",
        "--host",
        server.host,
        "--",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        cwd=project,
    )
    assert "no issues" in check.stdout


def test_status_and_env(server, project, deployed):
    onebox("env", "set", "--host", server.host, "FEATURE_FLAG=on", cwd=project)
    values = onebox_json("env", "list", "--host", server.host, cwd=project)["result"]["values"]
    assert values["FEATURE_FLAG"] == "********" and "SECRET_KEY" in values
    revealed = onebox_json("env", "list", "--reveal", "--host", server.host, cwd=project)
    assert revealed["result"]["values"]["FEATURE_FLAG"] == "on"
    onebox("env", "unset", "--host", server.host, "FEATURE_FLAG", cwd=project)
    values = onebox_json("env", "list", "--host", server.host, cwd=project)["result"]["values"]
    assert "FEATURE_FLAG" not in values and "SECRET_KEY" in values
    unknown = onebox("env", "unset", "--host", server.host, "NOPE", cwd=project, check=False)
    assert unknown.returncode == 3 and "not set: NOPE" in unknown.stderr
    status = onebox_json("status", "--host", server.host, cwd=project)["result"]
    assert status["release"]["release_id"] == deployed["release"]
    assert status["health"] == 200 and status["caddy"] == "active"
    logs = onebox("logs", "--host", server.host, "-n", "200", cwd=project)
    assert "Booting worker" in logs.stdout
    # requests are in Caddy's access log, static files too (not in the journal)
    assert fetch(f"https://{server.address}/?from=the-access-log", server.ca).status == 200
    access = onebox("logs", "--access", "--host", server.host, "-n", "20", cwd=project).stdout
    assert re.search(r" GET /\?from=the-access-log HTTP/[\d.]+ 200 \d+ B [\d.]+ ms\n", access)
    raw = onebox("--json", "logs", "--access", "--host", server.host, "-n", "1", cwd=project)
    assert json.loads(raw.stdout.splitlines()[-1])["request"]["uri"] == "/?from=the-access-log"
    journal = onebox("logs", "--host", server.host, "-n", "50", cwd=project).stdout
    assert "from=the-access-log" not in journal


def test_export_kubernetes_runs_in_podman(server, project, deployed, tmp_path):
    """The export: an image built on the server, manifests that pass Kubernetes' schemas,
    the secrets in a file of their own; then podman plays it: migrations, then the app."""
    folder = tmp_path / "k8s"
    text = onebox(
        "export", "kubernetes", "--host", server.host, "--output", str(folder), cwd=project
    ).stdout
    secrets = dict(
        line.split("=", 1)
        for line in server.ssh("cat /etc/onebox/mvp.env").splitlines()
        if "=" in line and not line.startswith("#")
    )
    secret_value = secrets["SECRET_KEY"].strip('"')
    assert "exported as image mvp:" in text and secret_value not in text, text
    again = onebox_json(
        "export", "kubernetes", "--host", server.host, "--output", str(folder), cwd=project
    )["result"]
    assert again["base_reused"] and again["release"] == deployed["release"], again
    assert "SECRET_KEY" in again["secret_keys"] and again["warnings"][0].startswith("SQLite")
    manifests, secret_file = Path(again["manifests"]), Path(again["secret_file"])
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert "*-secret.yaml" in (folder / ".gitignore").read_text()
    assert secret_value not in manifests.read_text()
    objects = [o for o in yaml.safe_load_all(manifests.read_text()) if o]
    secret = next(yaml.safe_load_all(secret_file.read_text()))
    for manifest in [*objects, secret]:  # the schemas of Kubernetes 1.31, no unknown field
        kubernetes_validate.validate(manifest, "1.31", strict=True)
    kinds = {f"{o['kind']}/{o['metadata']['name']}" for o in objects}
    assert {
        "Deployment/mvp-web",
        "Service/mvp",
        "Ingress/mvp",
        "PersistentVolumeClaim/mvp-data",
        f"Job/mvp-migrate-{deployed['release']}",
    } <= kinds
    image = Path(again["image_file"])
    assert secret_value.encode() not in _layers(image)  # nothing secret in the image
    _play_in_podman(server, image, objects, secret, tmp_path / "podman")


def _layers(archive: Path) -> bytes:
    """Every layer of an oci-archive, uncompressed, end to end."""
    data = b""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            blob = tar.extractfile(member) if member.isfile() else None
            content = blob.read() if blob else b""
            if content[:2] == b"\x1f\x8b":
                data += gzip.decompress(content)
    return data


def _play_in_podman(server, image: Path, objects: list, secret: dict, folder: Path) -> None:
    podman = Podman(folder)
    with socket.socket() as probe:  # a free port on loopback for the pod's proxy
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        podman.run("load", "--input", str(image))
        shared, migrate, deployments = playable(objects, secret, port)
        podman.play([*shared, migrate], "migrate")
        code, logs = podman.wait_exited(f"{migrate['metadata']['name']}-migrate")
        assert code == 0 and "Applying guestbook.0001_initial... OK" in logs, logs
        podman.play([o for o in shared if o["kind"] == "ConfigMap"] + deployments, "web")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while _status(f"{base}/.onebox/health") != 200:
            assert time.monotonic() < deadline, podman.run("logs", "mvp-web-pod-0-app")
            time.sleep(0.5)
        headers = ["-H", f"Host: {server.address}", "-H", "X-Forwarded-Proto: https"]
        page = _curl(f"{base}/", headers)
        assert "<h1>Guestbook</h1>" in page, page  # Django, its database migrated by the Job
        css = re.search(r'href="(/static/[^"]+\.css)"', page).group(1)
        served = _curl(f"{base}{css}", [*headers, "--head"])
        assert " 200" in served.splitlines()[0] and "immutable" in served, served  # by Caddy
    finally:
        podman.cleanup()


def _status(url: str) -> int:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}", url],
        capture_output=True,
        text=True,
    )
    return int(out.stdout or 0)


def _curl(url: str, args: list[str]) -> str:
    out = subprocess.run(["curl", "-s", "-m", "10", *args, url], capture_output=True, text=True)
    return out.stdout


def test_redeploy_keeps_data_and_dry_run_changes_nothing(server, project, deployed):
    before = onebox_json("status", "--host", server.host, cwd=project)["result"]["releases"]
    dry = onebox("deploy", "--dry-run", "--host", server.host, cwd=project)
    assert "dry run: nothing was done" in dry.stdout
    assert onebox_json("status", "--host", server.host, cwd=project)["result"]["releases"] == before
    (project / "guestbook" / "templates" / "guestbook" / "index.html").write_text(
        (project / "guestbook" / "templates" / "guestbook" / "index.html")
        .read_text()
        .replace("Deployed with onebox.", "Deployed again with onebox.")
    )
    result = onebox_json("deploy", "--host", server.host, cwd=project)["result"]
    assert result["release"] != deployed["release"]
    page = fetch(result["url"], server.ca).body
    assert "Deployed again with onebox." in page and "<strong>Ada</strong>" in page
    # compiled once for the virtualenv, on each deploy for the release's code (the app
    # cannot write them into its read-only release): no Django start compiles Django
    compiled = server.ssh(
        "cd /srv/mvp/current && test -f .venv/.onebox-bytecode && "
        "ls .venv/lib/python3*/site-packages/django/__pycache__ guestbook/__pycache__"
    )
    assert "__init__.cpython-" in compiled and "views.cpython-" in compiled, compiled
    # the agent too, once per version: its copy is named by the hash of this onebox's
    # sources, root's alone, touched by this deploy (what the pruning goes by)
    version = entry_script._sources_hash(str(Path(entry_script.__file__).parent))
    cache = server.ssh(
        f"cd /var/cache/onebox/agent && stat -c '%a %U' . && ls && "
        f"ls {version}/onebox_agent/__pycache__ && "
        f"echo $(( $(date +%s) - $(stat -c %Y {version}) ))"
    ).split()
    assert cache[:3] == ["700", "root", version], cache
    assert any(name.startswith("deploy.cpython-") for name in cache), cache
    assert int(cache[-1]) < 300, cache


def test_failing_migration_keeps_the_site_serving(server, project, deployed):
    live = onebox_json("status", "--host", server.host, cwd=project)["result"]["release"]
    migration = project / "guestbook" / "migrations" / "0002_broken.py"
    migration.write_text(
        "from django.db import migrations\n\n"
        "def boom(apps, schema_editor):\n    raise RuntimeError('this migration fails')\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('guestbook', '0001_initial')]\n"
        "    operations = [migrations.RunPython(boom)]\n"
    )
    try:
        failed = onebox("deploy", "--host", server.host, cwd=project, check=False)
    finally:
        migration.unlink()
    assert failed.returncode == 1
    assert "migrate failed" in failed.stderr and "this migration fails" in failed.stderr
    assert "Traceback" not in failed.stderr.split("output:")[0]
    status = onebox_json("status", "--host", server.host, cwd=project)["result"]
    assert status["release"]["release_id"] == live["release_id"]
    assert fetch(f"https://{server.address}/", server.ca).status == 200
    # the standby's slot was freed as the build began: status names the deploy that took it
    assert status["standby"]["why"].startswith("the deploy of release"), status["standby"]


def test_changed_host_key_is_refused(server, project, deployed):
    known = Path(f"/var/lib/onebox/sandboxes/{server.name}/known_hosts")
    original = known.read_text()
    fake = Path(f"/tmp/onebox-fake-{server.name}")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    kind, key = fake.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"{server.address} {kind} {key}\n")
    try:
        result = onebox("status", "--host", server.host, cwd=project, check=False)
    finally:
        known.write_text(original)
        fake.unlink()
        fake.with_suffix(".pub").unlink()
    assert result.returncode == 5
    assert "host key of sandbox:" in result.stderr and "changed" in result.stderr
    assert "Traceback" not in result.stderr

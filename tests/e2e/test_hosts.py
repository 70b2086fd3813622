"""Hosts with roles, on four practice servers: a load balancer (Caddy), two web hosts, and
the database host (PostgreSQL), set up by one `onebox setup`; rolling deploys and
rollbacks under steady load through the balancer; a web host powered off mid-deploy;
media in an S3 bucket (moto's server, on the off-site practice server test_data.py
shares) that both web hosts use, backed up and restored."""

from __future__ import annotations

import html
import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onebox import sandbox

from .conftest import (
    ROOT,
    S3_KEYS,
    S3_PORT,
    Server,
    copy_project,
    edit,
    fetch,
    onebox,
    onebox_background,
    onebox_json,
    practice_server,
)
from .load import Load

pytestmark = pytest.mark.e2e


# [deploy] after_switch: a line per run, on the host it ran on
SWITCHED = "echo ran >> /srv/mvp/shared/state/after-switch"


def hook_runs(web: Server) -> int:
    return int(web.ssh("cat /srv/mvp/shared/state/after-switch 2>/dev/null | wc -l"))


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("hostsdb", "12", tmp_path_factory)


@pytest.fixture(scope="module")
def web1(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("hostsweb1", "12", tmp_path_factory)


@pytest.fixture(scope="module")
def web2(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("hostsweb2", "12", tmp_path_factory)


@pytest.fixture(scope="module")
def lb(tmp_path_factory) -> Iterator[Server]:
    yield from practice_server("hostslb", "12", tmp_path_factory)


@pytest.fixture(scope="module")
def project(tmp_path_factory, db, web1, web2, lb) -> Path:
    root = copy_project(ROOT / "examples" / "mvp", tmp_path_factory.mktemp("hosts") / "mvp")
    config = root / "onebox.toml"
    edit(config, 'host = "sandbox:demo"\n', "")  # (the first web host is the default)
    edit(config, 'user = "onebox"\n', "")  # (fresh servers: setup logs in as root first)
    edit(config, 'engine = "sqlite"', 'engine = "postgresql"')
    edit(config, "[deploy]\n", f"[deploy]\nprobation = 3\nafter_switch = [{SWITCHED!r}]\n")
    config.write_text(
        config.read_text()
        + f'\n[servers]\nweb = ["{web1.host}", "{web2.host}"]\nlb = "{lb.host}"\n'
        + f'db = "{db.host}"\n'
    )
    return root


@pytest.fixture(scope="module")
def deployed(project: Path, db, web1, web2, lb) -> dict:
    setup = onebox_json("setup", cwd=project)["result"]
    roles = {host["host"]: host["role"] for host in setup["hosts"]}
    assert roles == {db.host: "db", web1.host: "web", web2.host: "web", lb.host: "lb"}
    changed = {host["host"]: host["changed"] for host in setup["hosts"]}
    assert "database host (PostgreSQL over TLS, for the app hosts)" in changed[db.host]
    assert "the database host's certificate and password" in changed[web2.host]
    assert "load balancer (Caddy)" in changed[lb.host]
    assert 'user = "onebox"' in (project / "onebox.toml").read_text()  # all locked down
    result = onebox_json("deploy", cwd=project)["result"]
    assert [h["host"] for h in result["hosts"]] == [web1.host, web2.host]
    assert result["url"] == f"https://{lb.address}/" and result["problems"] == []
    lb.ca.write_text(onebox("ca", "--host", lb.host, cwd=project).stdout)
    return result


def psql(db: Server, query: str) -> str:
    return db.ssh(f"cd / && runuser -u postgres -- psql -X -At -d mvp -c {shlex.quote(query)}")


def post_entry(url: str, ca: Path, jar: Path, name: str, message: str) -> int:
    page = fetch(url, ca, args=("-c", str(jar))).body
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = ("-F", f"csrfmiddlewaretoken={token}", "-F", f"name={name}", "-F", f"message={message}")
    return fetch(url, ca, args=("-b", str(jar), "-e", url, *form)).status


def serving(project: Path, host: Server) -> str:
    status = onebox_json("status", "--host", host.host, cwd=project)["result"]
    return status["release"]["release_id"]


def change_code(project: Path, marker: str) -> None:
    template = project / "guestbook" / "templates" / "guestbook" / "index.html"
    text = re.sub(r"<!-- marker .*? -->", "", template.read_text())
    template.write_text(
        text.replace("<h1>Guestbook</h1>", f"<h1>Guestbook</h1><!-- marker {marker} -->")
    )


def markers(lb: Server, count: int = 12) -> set[str]:
    pages = (fetch(f"https://{lb.address}/", lb.ca).body for _ in range(count))
    return {
        m.group(1) if m else "" for m in (re.search(r"<!-- marker (\S+) -->", p) for p in pages)
    }


def load_through(lb: Server) -> Load:
    return Load(lb.address, lb.address, lb.ca, rate=15, limit=240)


def test_setup_again_changes_nothing_on_any_host(project, deployed, db, web1, web2):
    again = onebox_json("setup", cwd=project)["result"]
    assert {h["host"]: h["changed"] for h in again["hosts"] if h["changed"]} == {}
    only = onebox_json("setup", "--role", "db", cwd=project)["result"]
    assert [(h["host"], h["role"]) for h in only["hosts"]] == [(db.host, "db")]
    # `onebox status`: each web host, and whether they serve the same code.
    status = onebox_json("status", cwd=project)["result"]
    assert [h["host"] for h in status["hosts"]] == [web1.host, web2.host]
    assert status["problems"] == []
    # One database, backed up once: from the first web host.
    timer = "systemctl is-active onebox-mvp-backup.timer"
    assert web1.ssh(timer).strip() == "active"
    assert web2.ssh(timer, check=False).strip() != "active"


def test_the_balancer_serves_both_web_hosts_over_https(deployed, lb, web1, web2, tmp_path):
    page = fetch(f"https://{lb.address}/", lb.ca)
    assert page.status == 200 and "<h1>Guestbook</h1>" in page.body
    assert "server" not in page.headers
    plain = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{lb.address}/"],
        capture_output=True,
        text=True,
    )
    assert plain.stdout == "308"
    for _ in range(20):
        fetch(f"https://{lb.address}/?from=test", lb.ca)
    for web in (web1, web2):  # each got some (least_conn breaks ties at random)
        assert "/?from=test" in web.ssh("cat /var/log/caddy/mvp-access.log")
    # A web host's own site answers only the balancer: its port is shut to others.
    probe = f"timeout 5 bash -c 'echo > /dev/tcp/{web1.address}/8480' && echo open || echo shut"
    assert lb.ssh(probe).strip() == "open"
    assert web2.ssh(probe).strip() == "shut"


def test_the_app_stores_its_data_on_the_database_host(deployed, db, web1, web2, lb, tmp_path):
    url = f"https://{lb.address}/"
    assert post_entry(url, lb.ca, tmp_path / "jar", "Ada", "on the db host") == 302
    assert "<strong>Ada</strong>: on the db host" in fetch(url, lb.ca).body
    assert psql(db, "select name, message from guestbook_entry") == "Ada|on the db host\n"
    for _ in range(6):
        fetch(url, lb.ca)
    # The web hosts' connections (conn_max_age keeps them) come from them, encrypted.
    sessions = psql(
        db,
        "select client_addr, ssl from pg_stat_activity join pg_stat_ssl using (pid) "
        "where datname = 'mvp' and usename = 'mvp'",
    ).split()
    assert sessions and set(sessions) <= {f"{web1.address}|t", f"{web2.address}|t"}
    # Nothing of the database lives on a web host.
    installed = web1.ssh("dpkg-query -W -f='${Status}' postgresql 2>&1", check=False)
    assert "install ok installed" not in installed


def test_the_database_is_reachable_from_the_web_hosts_only(deployed, db, web1, web2, lb):
    probe = f"timeout 5 bash -c 'echo > /dev/tcp/{db.address}/5432' && echo open || echo shut"
    assert web1.ssh(probe).strip() == "open" and web2.ssh(probe).strip() == "open"
    assert lb.ssh(probe).strip() == "shut"
    outside = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=20)
    assert outside.stdout.strip() == "shut"  # (this machine: the practice network's gateway)
    rules = db.ssh("nft list table inet onebox")
    assert f"ip saddr {{ {web1.address}, {web2.address} }} tcp dport 5432 accept" in rules
    assert "tcp dport 22 accept" in rules and "443" not in rules  # no web server on it
    hba = db.ssh("cat /etc/postgresql/15/main/pg_hba.conf")
    assert hba.startswith("# onebox mvp begin")
    assert f'hostssl "mvp","onebox_verify_mvp" "mvp" {web2.address}/32 scram-sha-256' in hba


def test_the_web_hosts_check_the_database_certificate(deployed, db, web1):
    secrets = web1.ssh("cat /etc/onebox/mvp.env")
    assert 'PGSSLMODE="verify-full"' in secrets
    assert "sslmode=verify-full&sslrootcert=/srv/mvp/database-ca.crt" in secrets
    password = re.search(r'^DATABASE_PASSWORD="(.+)"$', secrets, re.M).group(1)
    assert password == db.ssh("cat /etc/onebox/db-host/mvp.password")
    assert db.ssh("stat -c '%a %U' /etc/onebox/db-host/ca.key").split() == ["600", "root"]
    assert password not in db.ssh("ps -eo args") + web1.ssh("ps -eo args")
    connect = (
        f"PGPASSWORD={shlex.quote(password)} PGSSLMODE=verify-full PGSSLROOTCERT={{ca}} "
        f"psql -X -At -h {db.address} -U mvp -d mvp -c 'select 1'"
    )
    assert web1.ssh(connect.format(ca="/srv/mvp/database-ca.crt")).strip() == "1"
    # Another CA's certificate (the system's) does not vouch for it: refused.
    refused = web1.ssh(connect.format(ca="/etc/ssl/certs/ca-certificates.crt") + " 2>&1", False)
    assert "certificate verify failed" in refused
    # Without TLS, the database host admits nobody.
    plain = web1.ssh(connect.format(ca="x").replace("verify-full", "disable") + " 2>&1", False)
    assert "no pg_hba.conf entry" in plain and "no encryption" in plain


def test_a_rolling_deploy_under_load_drops_nothing(project, deployed, lb, web1, web2):
    change_code(project, "two")
    before = {web.name: serving(project, web) for web in (web1, web2)}
    hooks = hook_runs(web1), hook_runs(web2)
    with load_through(lb) as load:
        started = time.monotonic()
        deploy = onebox_background("deploy", cwd=project)
        lines, other = [], None
        for line in deploy.stdout:
            lines.append(line)
            if f"{web2.host} (2/2): the release" in line:
                # The roll holds every web host: nothing else deploys to one meanwhile.
                other = onebox("rollback", "--host", web2.host, cwd=project, check=False)
                assert other.returncode != 0
                assert "a rolling operation holds every web host: rolling deploy" in other.stderr
        assert deploy.wait(timeout=300) == 0
        out = "".join(lines)
        seconds = time.monotonic() - started
    print(
        f"rolling deploy {seconds:.1f}s under load: {load.ok}, longest gap {load.longest_gap:.2f}s"
    )
    assert load.failures == [] and load.total > 100
    assert out.index(f"{web1.host} (1/2): traffic to") < out.index(f"{web2.host} (2/2): traffic to")
    assert other is not None  # (it was tried)
    assert markers(lb) == {"two"}
    after = {web.name: serving(project, web) for web in (web1, web2)}
    assert all(after[web] > before[web] for web in after)
    # [deploy] after_switch ran once, on the first web host, once both served the release.
    assert (hook_runs(web1), hook_runs(web2)) == (hooks[0] + 1, hooks[1])


def test_a_rolling_rollback_under_load_drops_nothing(project, deployed, lb, web1, web2):
    with load_through(lb) as load:
        result = onebox_json("rollback", cwd=project)["result"]
    print(f"rolling rollback under load: {load.ok}, longest gap {load.longest_gap:.2f}s")
    assert load.failures == [] and load.total > 20
    assert [h["host"] for h in result["hosts"]] == [web1.host, web2.host]
    assert all(h["standby"] for h in result["hosts"])  # (each a switch to its standby)
    assert markers(lb) == {""}  # the first release, before any marker


def test_a_web_host_powered_off_mid_deploy(project, deployed, lb, web1, web2):
    change_code(project, "three")
    first = serving(project, web1)
    with load_through(lb) as load:
        deploy = onebox_background("deploy", cwd=project)
        out = []
        for line in deploy.stdout:
            out.append(line)
            if f"{web2.host} (2/2): traffic to" in line:  # (web1 has switched: probation 3 s)
                sandbox.stop(web2.name, log=lambda _: None)
        deploy.wait(timeout=300)
        text = "".join(out)
        assert deploy.returncode != 0
        assert f"the rolling deploy stopped on {web2.host}" in text
        assert f"{web1.host} went back to the release it served" in text
        assert f"`onebox deploy --skip-host {web2.host}`" in text
        time.sleep(2)  # (the balancer's health checks: every second)
        assert markers(lb) == {""}  # web1 serves the release it served, alone
    # Only requests in flight to web2 as it went down may have failed.
    print(f"web2 powered off under load: {load.ok}, failed {load.failures}")
    assert len(load.failures) <= 8 and load.longest_gap < 5
    assert serving(project, web1) == first
    refused = onebox("deploy", cwd=project, check=False)
    assert refused.returncode != 0
    assert f"web host {web2.host} does not answer, so nothing was deployed" in refused.stderr
    skipped = onebox_json("deploy", "--skip-host", web2.host, cwd=project)["result"]
    assert [h["host"] for h in skipped["hosts"]] == [web1.host]
    assert skipped["skipped"] == [web2.host] and skipped["problems"] == []
    assert markers(lb) == {"three"}
    # Back on, web2 serves what it served; the next deploy brings every host level.
    sandbox.start(web2.name, log=lambda _: None)
    onebox("deploy", cwd=project)
    time.sleep(2)
    assert markers(lb, 20) == {"three"}
    assert onebox_json("status", cwd=project)["result"]["problems"] == []


def test_backup_verify_and_restore_of_the_database_host(project, deployed, db):
    backup = onebox_json("backup", cwd=project)["result"]
    assert backup["manifest"]["engine"] == "postgresql"
    rows = psql(db, "select name, message from guestbook_entry order by id")
    assert rows.startswith("Ada|on the db host\n")  # (then the load's entries)
    psql(db, "delete from guestbook_entry")
    assert "restored identical" in onebox("backup", "verify", cwd=project).stdout
    restored = onebox("restore", backup["id"], cwd=project, input="")
    assert f"restored backup {backup['id']}" in restored.stdout
    assert psql(db, "select name, message from guestbook_entry order by id") == rows


BUCKET = "mvp-media"
S3_CLIENT = (
    "import boto3, json; s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:9000', "
    "region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x'); "
)


def s3(offsite: Server, code: str) -> str:
    """Python with a boto3 client of the S3 server, run on its host."""
    return offsite.ssh("/opt/s3/bin/python -c " + shlex.quote(S3_CLIENT + code))


def on_web_host(lb: Server, web: Server, curl: str) -> str:
    """A request to one web host's own site, sent as the balancer sends it: from its host
    (the only address that port admits), over plain HTTP, X-Forwarded-Proto https."""
    return lb.ssh(
        f"curl -s --max-time 30 -H 'Host: {lb.address}' -H 'X-Forwarded-Proto: https' "
        f"{curl} http://{web.address}:8480/"
    )


def upload_through(lb: Server, web: Server, name: str, content: str) -> None:
    lb.ssh(f"printf %s {shlex.quote(content)} > /tmp/{name}")
    page = on_web_host(lb, web, "-D -")
    cookie = re.search(r"csrftoken=([^;\s]+)", page).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = (
        f"-H 'Cookie: csrftoken={cookie}' -H 'Origin: https://{lb.address}' "
        f"-F csrfmiddlewaretoken={token} -F name=Grace -F message={name} "
        f"-F attachment=@/tmp/{name} -o /dev/null -w '%{{http_code}}'"
    )
    assert on_web_host(lb, web, form) == "302"


def slots_running(web: Server) -> int:
    units = "systemctl list-units 'onebox-mvp@*' --state=active --plain --no-legend"
    return len(web.ssh(units).splitlines())


def attachment_urls(page: str) -> list[str]:
    return [html.unescape(u) for u in re.findall(r'<a href="([^"]+)">attachment</a>', page)]


def test_media_uploaded_through_web1_is_served_by_web2(
    project, deployed, lb, web1, web2, offsite, tmp_path
):
    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text() + "django-storages[s3]==1.14.6\n")
    endpoint = f"http://{offsite.address}:{S3_PORT}"
    (project / "onebox.toml").write_text(
        (project / "onebox.toml").read_text()
        + f'\n[media]\nstorage = "s3"\nbucket = "{BUCKET}"\nendpoint = "{endpoint}"\n'
        + 'region = "us-east-1"\n'
    )
    # Without the keys nothing is built; without the bucket no host switches.
    refused = onebox("deploy", cwd=project, check=False)
    assert refused.returncode != 0
    assert "the app needs AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in refused.stderr
    pairs = [f"{key}={value}" for key, value in S3_KEYS.items()]
    onebox("env", "set", *pairs, cwd=project)  # (on every web host)
    assert "AWS_SECRET_ACCESS_KEY" in web2.ssh("cat /etc/onebox/mvp.env")
    refused = onebox("deploy", cwd=project, check=False)
    assert refused.returncode != 0
    assert f"the media bucket '{BUCKET}' does not answer" in refused.stderr
    assert "create the bucket at your provider" in refused.stderr
    assert markers(lb) == {"three"}
    s3(offsite, f"s3.create_bucket(Bucket='{BUCKET}')")
    # A host that refuses the release after another built it: that one stops it again.
    onebox("env", "unset", "--host", web2.host, "AWS_SECRET_ACCESS_KEY", cwd=project)
    refused = onebox("deploy", cwd=project, check=False)
    assert refused.returncode != 0
    assert f"the rolling deploy stopped on {web2.host}: the app needs AWS_SECRET_ACCESS_KEY" in (
        refused.stderr
    )
    assert slots_running(web1) == 1 and markers(lb) == {"three"}  # (its live one alone)
    onebox("env", "set", "--host", web2.host, pairs[1], cwd=project)
    edit(project / "onebox.toml", "probation = 3\n", "probation = 3\nbatch = 2\n")
    deployed = onebox("deploy", cwd=project)
    assert deployed.stderr.count("✓ media storage") == 2  # (checked on each web host)
    for web in (web1, web2):  # [deploy] batch = 2: both switched at once
        assert f"✓ {web.host}: switch traffic" in deployed.stderr
    upload_through(lb, web1, "shared.txt", "uploaded through web1")
    # web2 lists it, with the bucket's address for it; the file is in the bucket alone.
    urls = attachment_urls(on_web_host(lb, web2, ""))
    assert urls and urls[-1].startswith(f"{endpoint}/{BUCKET}/attachments/shared")
    got = subprocess.run(["curl", "-s", "--max-time", "20", urls[-1]], capture_output=True)
    assert got.stdout == b"uploaded through web1"
    for web in (web1, web2):
        assert web.ssh("find /srv/mvp/shared/media -type f | wc -l").strip() == "0"


def test_backup_and_restore_of_media_in_the_bucket(project, deployed, lb, web1, offsite):
    backup = onebox_json("backup", cwd=project)["result"]
    copied = backup["manifest"]["media"]["bucket"]
    assert copied["bucket"] == BUCKET and copied["objects"] == 1 and copied["fetched"] == 1
    keys = f"[o['Key'] for o in s3.list_objects_v2(Bucket='{BUCKET}').get('Contents', [])]"
    (key,) = json.loads(s3(offsite, f"print(json.dumps({keys}))"))
    # The next backup fetches nothing that did not change.
    again = onebox_json("backup", cwd=project)["result"]["manifest"]["media"]["bucket"]
    assert again["objects"] == 1 and again["fetched"] == 0
    s3(offsite, f"s3.delete_object(Bucket='{BUCKET}', Key='{key}')")
    upload_through(lb, web1, "later.txt", "uploaded after the backup")
    restored = onebox("restore", backup["id"], cwd=project, input="")
    assert f"media bucket {BUCKET}: 1 of 1 file(s) put back; 1 object(s) the backup" in (
        restored.stdout
    )
    after = json.loads(s3(offsite, f"print(json.dumps({keys}))"))
    assert key in after and len(after) == 2  # (the later upload stays)
    body = s3(offsite, f"print(s3.get_object(Bucket='{BUCKET}', Key='{key}')['Body'].read())")
    assert body.strip() == "b'uploaded through web1'"


CADDY_ROOT_CA = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt"
# The provider's balancer, as a user configures it: HTTPS for the site's name, to each web
# host's port 8480, health checks on onebox's path (any Host answers it).
EXTERNAL_CADDYFILE = """shop.test {{
	tls internal
	reverse_proxy {web1}:8480 {web2}:8480 {{
		lb_policy round_robin
		health_uri /.onebox/health
		health_interval 1s
	}}
}}
"""


def test_behind_an_external_load_balancer(project, deployed, lb, web1, web2, offsite, tmp_path):
    """lb = "external": a balancer onebox does not set up (a cloud provider's; here the
    off-site practice server's Caddy, set up by hand). The web hosts admit it alone."""
    config = project / "onebox.toml"
    edit(
        config, f'lb = "{lb.host}"\n', f'lb = "external"\nlb_addresses = ["{offsite.address}/32"]\n'
    )
    edit(config, 'domain = ""', 'domain = "shop.test"')
    setup = onebox_json("setup", cwd=project)["result"]
    assert [h["role"] for h in setup["hosts"]] == ["db", "web", "web"]  # (no balancer host)
    assert onebox_json("deploy", cwd=project)["result"]["url"] == "https://shop.test/"
    caddyfile = EXTERNAL_CADDYFILE.format(web1=web1.address, web2=web2.address)
    offsite.ssh(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy >/dev/null && "
        f"cat > /etc/caddy/Caddyfile <<'EOF'\n{caddyfile}EOF\nsystemctl reload caddy && sleep 2"
    )
    ca = tmp_path / "external-ca.pem"
    ca.write_text(
        offsite.ssh("cat /var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt")
    )
    resolve = f"shop.test:443:{offsite.address}"
    for _ in range(12):
        page = fetch("https://shop.test/?from=external", ca, resolve=resolve)
        assert page.status == 200 and "<h1>Guestbook</h1>" in page.body
    for web in (web1, web2):  # each got some (the balancer's round robin)
        assert "/?from=external" in web.ssh("cat /var/log/caddy/mvp-access.log")
        site = web.ssh("cat /etc/caddy/sites/mvp.caddy")
        assert f"trusted_proxies {offsite.address}/32" in site
    # Port 8480 is the external balancer's now: onebox's former balancer host is refused.
    probe = f"timeout 5 bash -c 'echo > /dev/tcp/{web1.address}/8480' && echo open || echo shut"
    assert offsite.ssh(probe).strip() == "open"
    assert lb.ssh(probe).strip() == "shut"


TICKER = "python -c 'import time; [time.sleep(60) for _ in iter(int, 1)]'"


def test_a_worker_host_runs_the_processes_and_serves_no_one(
    project, deployed, web1, web2, offsite, tmp_path
):
    """[servers] worker: web2 becomes the host of [processes], out of the web's way."""
    config = project / "onebox.toml"
    edit(
        config,
        f'web = ["{web1.host}", "{web2.host}"]',
        f'web = ["{web1.host}"]\nworker = ["{web2.host}"]',
    )
    config.write_text(config.read_text() + f'\n[processes]\nticker = "{TICKER}"\n')
    setup = onebox_json("setup", cwd=project)["result"]
    assert [h["role"] for h in setup["hosts"]] == ["db", "web", "worker"]
    deploy = onebox_json("deploy", cwd=project)["result"]
    assert [h["host"] for h in deploy["hosts"]] == [web1.host, web2.host]
    ticker = "systemctl is-active onebox-mvp-ticker@1.service"
    assert web2.ssh(ticker).strip() == "active"
    assert web1.ssh(ticker, check=False).strip() != "active"
    # `onebox logs --process` reads the journal where the process runs.
    assert onebox("logs", "--process", "ticker", "-n", "5", cwd=project).returncode == 0
    # No web traffic reaches a worker: its firewall opens neither 443 nor the balancer's port.
    for port in (443, 8480):
        probe = (
            f"timeout 5 bash -c 'echo > /dev/tcp/{web2.address}/{port}' && echo open || echo shut"
        )
        assert offsite.ssh(probe).strip() == "shut"
    ca = tmp_path / "external-ca.pem"
    ca.write_text(offsite.ssh(f"cat {CADDY_ROOT_CA}"))
    for _ in range(6):  # (the balancer's health checks took web2 out)
        page = fetch("https://shop.test/", ca, resolve=f"shop.test:443:{offsite.address}")
        assert page.status == 200
    status = onebox_json("status", cwd=project)["result"]
    assert [h["host"] for h in status["hosts"]] == [web1.host, web2.host]
    assert status["problems"] == []

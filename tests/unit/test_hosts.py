"""[servers] db: the config, the database URL the app host gets, the database host's
firewall and pg_hba.conf lines (the e2e proves them on practice servers)."""

from pathlib import Path

import pytest

from onebox.agent import db_host, firewall
from onebox.config import load_project
from onebox.errors import ConfigError
from onebox.hosts import address_of, database_url

BASE = """
[app]
name = "shop-web"
settings = "shop.settings"
wsgi = "shop.wsgi:application"

[server]
host = "deploy@203.0.113.7:2222"

[database]
engine = "postgresql"

[servers]
db = "admin@10.0.0.20:2200"
"""


def project(tmp_path: Path, text: str):
    (tmp_path / "onebox.toml").write_text(text)
    return load_project(tmp_path)


def test_the_app_host_gets_the_database_host_as_an_external_database(tmp_path):
    config = project(tmp_path, BASE).config
    assert config.database.url == "postgres://shop_web@10.0.0.20:5432/shop_web"
    assert database_url("shop", "[2001:db8::5]:22") == "postgres://shop@[2001:db8::5]:5432/shop"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('engine = "postgresql"', 'engine = "sqlite"'), "[servers] db sets up PostgreSQL"),
        (('engine = "postgresql"', 'engine = "mysql"'), "MariaDB on a database host is not"),
        (
            ('engine = "postgresql"', 'engine = "postgresql"\nurl = "postgres://a@b/c"'),
            "[servers] db and [database] url both say where the database is",
        ),
        (('db = "admin@10.0.0.20:2200"', 'db = "deploy@203.0.113.7:2222"'), "the app's own"),
        (('db = "admin@10.0.0.20:2200"', 'db = "not a host"'), "must be an address"),
    ],
)
def test_a_database_host_config_that_cannot_work_is_refused(tmp_path, change, expected):
    with pytest.raises(ConfigError) as info:
        project(tmp_path, BASE.replace(*change))
    assert expected in info.value.message + (info.value.hint or "")


def test_address_of_a_host_spec():
    assert address_of("root@db.internal:2222") == "db.internal"
    assert address_of("10.0.0.20") == "10.0.0.20"
    assert address_of("[2001:db8::5]:22") == "2001:db8::5"


def test_a_database_host_opens_its_port_to_the_app_hosts_only():
    wish = firewall.wish_of({"web": False, "allow": {"5432": ["10.0.0.11", "2001:db8::11"]}})
    rules = firewall.ruleset([wish], ssh=[22])
    assert "tcp dport { 22 } accept" in rules and "443" not in rules
    assert "ip saddr { 10.0.0.11 } tcp dport 5432 accept" in rules
    assert "ip6 saddr { 2001:db8::11 } tcp dport 5432 accept" in rules
    # An app host's (and an older wish, without the keys): the web ports, nothing more.
    web = firewall.ruleset([{"firewall": True, "open_ports": [8000]}], ssh=[22])
    assert "tcp dport { 22, 80, 443, 8000 }" in web and "udp dport { 443 }" in web
    assert "saddr" not in web


def test_pg_hba_admits_the_app_hosts_over_tls_first(tmp_path):
    hba = tmp_path / "pg_hba.conf"
    hba.write_text("local all postgres peer\n")
    block = db_host.hba_block("shop-web", ["10.0.0.11", "2001:db8::11"])
    assert 'hostssl "shop_web","onebox_verify_shop_web" "shop_web" 10.0.0.11/32 scram' in block
    assert "2001:db8::11/128 scram-sha-256" in block
    assert db_host.subject_name("10.0.0.20") == "IP:10.0.0.20"
    assert db_host.subject_name("db.internal") == "DNS:db.internal"


FOUR = """
[app]
name = "shop"
settings = "shop.settings"
wsgi = "shop.wsgi:application"

[database]
engine = "postgresql"

[servers]
web = ["10.0.0.11", "10.0.0.12"]
lb = "10.0.0.10"
db = "10.0.0.20"
"""


def test_several_web_hosts_the_first_is_the_default_host(tmp_path):
    config = project(tmp_path, FOUR).config
    assert config.web_hosts == ["10.0.0.11", "10.0.0.12"]
    assert config.server.host == "10.0.0.11"  # what other commands act on without --host


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('lb = "10.0.0.10"\n', ""), "several web hosts need a load balancer"),
        (('lb = "10.0.0.10"', 'lb = "10.0.0.12"'), "gives one host two roles"),
        (('web = ["10.0.0.11", "10.0.0.12"]', 'web = ["10.0.0.11", "10.0.0.11"]'), "twice"),
        (('db = "10.0.0.20"', 'db = "10.0.0.11"'), "names the app's own host"),
        (
            ("[servers]", '[server]\nhost = "10.0.0.99"\n\n[servers]'),
            "[server] host '10.0.0.99' is not one of [servers] web",
        ),
    ],
)
def test_roles_that_cannot_work_are_refused(tmp_path, change, expected):
    with pytest.raises(ConfigError) as info:
        project(tmp_path, FOUR.replace(*change))
    assert expected in info.value.message


def test_several_web_hosts_cannot_share_sqlite(tmp_path):
    text = FOUR.replace('engine = "postgresql"', 'engine = "sqlite"').replace(
        'db = "10.0.0.20"\n', ""
    )
    with pytest.raises(ConfigError) as info:
        project(tmp_path, text)
    assert "SQLite is a file on one of them" in info.value.message


def test_skip_host_must_name_a_web_host(tmp_path):
    from onebox.api.rolling import chosen_hosts

    loaded = project(tmp_path, FOUR)
    assert chosen_hosts(loaded, ("10.0.0.12",)) == ["10.0.0.11"]
    with pytest.raises(ConfigError, match=r"10\.0\.0\.99 is not one of the web or worker hosts"):
        chosen_hosts(loaded, ("10.0.0.99",))
    with pytest.raises(ConfigError, match="leaves no web host"):
        chosen_hosts(loaded, ("10.0.0.11", "10.0.0.12"))


def test_the_balancer_and_the_web_hosts_site(tmp_path):
    from onebox.api.provisioning import balancer_request
    from onebox.api.server import Server, rendered_files

    loaded = project(tmp_path, FOUR)
    server = Server(ssh=None, address="10.0.0.10")  # type: ignore[arg-type]  # (not used)
    caddyfile = balancer_request(loaded, server).files["caddyfile"]
    assert "reverse_proxy 10.0.0.11:8480 10.0.0.12:8480 {" in caddyfile
    assert "health_uri /" in caddyfile and "Host 10.0.0.10" in caddyfile
    site = rendered_files(loaded, "10.0.0.10")["site"]
    assert "10.0.0.10, http://:8480 {" in site
    assert "trusted_proxies 10.0.0.10" in site


def test_env_set_changes_every_web_host_and_names_those_done_when_one_fails(tmp_path, monkeypatch):
    from onebox.api import app as app_api
    from onebox.errors import RemoteStepFailed

    text = BASE.replace('host = "deploy@203.0.113.7:2222"', "") + (
        'web = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]\nlb = "10.0.0.10"\n'
    )
    loaded = project(tmp_path, text)
    asked: list[tuple[str | None, bool]] = []

    def call(project, host, reporter, request):
        asked.append((host, request.backup))
        if host == "10.0.0.13":
            raise RemoteStepFailed("the server does not answer", host=host)
        return {"changed": ["API_KEY"]}

    monkeypatch.setattr(app_api, "_simple", call)
    with pytest.raises(RemoteStepFailed) as info:
        app_api.env_set(loaded, None, None, values={"API_KEY": "x"})
    assert asked == [("10.0.0.11", False), ("10.0.0.12", False), ("10.0.0.13", False)]
    assert "(changed on 10.0.0.11, 10.0.0.12 already)" in info.value.message
    asked.clear()
    app_api.env_set(loaded, "10.0.0.12", None, values={"API_KEY": "x"})
    app_api.env_set(loaded, None, None, values={"RESTIC_X": "x"}, backup=True)
    assert asked == [("10.0.0.12", False), (None, True)]  # one host; the backups' host


def test_hosts_in_batches_run_at_once_and_each_failure_is_kept():
    import threading
    import time

    from onebox.api import rolling
    from onebox.errors import RemoteStepFailed

    assert rolling.batches(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    assert rolling.batches(["a"], 3) == [["a"]]
    seen: list[dict] = []

    class Screen:
        def event(self, event):
            seen.append(event)

        def notice(self, message):
            seen.append({"notice": message})

    running, most = set(), 0
    guard = threading.Lock()

    def work(name, reporter):
        nonlocal most
        with guard:
            running.add(name)
            most = max(most, len(running))
        reporter.event({"event": "step", "name": "switch traffic", "status": "changed"})
        time.sleep(0.2)
        with guard:
            running.discard(name)
        if name == "b":
            raise RemoteStepFailed("health check failed", host=name)
        return {"release": name}

    done, failed = rolling.together(["a", "b", "c"], work, Screen())
    assert most == 3 and set(done) == {"a", "c"} and [n for n, _ in failed] == ["b"]
    assert {e["name"] for e in seen} == {
        "a: switch traffic",
        "b: switch traffic",
        "c: switch traffic",
    }
    seen.clear()
    done, failed = rolling.together(["a"], work, Screen())  # alone: its steps as they are
    assert done == {"a": {"release": "a"}} and seen[0]["name"] == "switch traffic"


EXTERNAL = BASE.replace('host = "deploy@203.0.113.7:2222"', 'domain = "shop.example.com"') + (
    'web = ["10.0.0.11", "10.0.0.12"]\nlb = "external"\nlb_addresses = ["10.0.0.0/24"]\n'
)


def test_an_external_balancer_is_admitted_by_its_networks_and_not_set_up(tmp_path):
    from onebox.api.provisioning import role_of
    from onebox.api.server import balancer_addresses, site_address

    loaded = project(tmp_path, EXTERNAL)
    assert loaded.config.servers.managed_lb == ""
    assert balancer_addresses(loaded) == ["10.0.0.0/24"]
    assert site_address(loaded) == "shop.example.com"
    assert role_of(loaded, "10.0.0.11") == "web"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('lb_addresses = ["10.0.0.0/24"]\n', ""), "needs the addresses the balancer connects"),
        (('"10.0.0.0/24"', '"10.0.0.0/33"'), "is not an address or network"),
        (('lb = "external"', 'lb = "10.0.0.10"'), 'lb_addresses are for lb = "external"'),
        (('domain = "shop.example.com"', ""), "[server] domain names the site"),
    ],
)
def test_an_external_balancer_config_that_cannot_work_is_refused(tmp_path, change, expected):
    with pytest.raises(ConfigError) as info:
        project(tmp_path, EXTERNAL.replace(*change))
    assert expected in info.value.message


def test_status_of_several_web_hosts_says_when_they_differ_or_do_not_answer(tmp_path, monkeypatch):
    from onebox import views
    from onebox.api import app as app_api
    from onebox.errors import ConnectionFailed

    text = BASE.replace('host = "deploy@203.0.113.7:2222"', "") + (
        'web = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]\nlb = "10.0.0.10"\n'
    )
    loaded = project(tmp_path, text)
    commits = {"10.0.0.11": "abc", "10.0.0.12": "def"}

    def one(project, host, reporter):
        if host == "10.0.0.13":
            raise ConnectionFailed("ssh: connect to host 10.0.0.13 port 22: No route to host")
        release = {"release_id": "r1", "commit": commits[host], "lock_hash": "l1"}
        return {"host": host, "release": release, "problems": []}

    monkeypatch.setattr(app_api, "host_status", one)
    result = app_api.status(loaded, None, None)
    assert [h["host"] for h in result["hosts"]] == ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    assert result["problems"][0].startswith("10.0.0.13: ssh: connect to host")
    assert (
        "serve different code: 10.0.0.11 (commit abc, lock l1), 10.0.0.12 (commit def"
        in (result["problems"][1])
    )
    commits["10.0.0.12"] = "abc"
    assert len(app_api.status(loaded, None, None)["problems"]) == 1  # (the host down alone)
    shown = views.status_text({"hosts": [result["hosts"][2]], "problems": ["x"]})
    assert shown.startswith("server   10.0.0.13\nPROBLEM  does not answer: ssh:")


def test_a_rolling_deploy_names_the_models_that_take_uploads(tmp_path):
    from onebox.api.rolling import takes_uploads
    from onebox.bundle import Bundle

    (tmp_path / "shop" / "models").mkdir(parents=True)
    (tmp_path / "shop" / "models" / "product.py").write_text(
        "photo = models.ImageField(upload_to='p/')\n"
    )
    (tmp_path / "blog").mkdir()
    (tmp_path / "blog" / "models.py").write_text("title = models.CharField(max_length=9)\n")
    (tmp_path / "notes.py").write_text("FileField(")  # (not a models module)
    files = [Path("blog/models.py"), Path("notes.py"), Path("shop/models/product.py")]
    assert takes_uploads(Bundle(tmp_path, files, "")) == "shop/models/product.py"
    assert takes_uploads(Bundle(tmp_path, files[:2], "")) == ""


def test_worker_hosts_run_the_background_and_reach_the_database(tmp_path):
    from onebox.api.provisioning import role_of

    loaded = project(
        tmp_path, FOUR.replace('db = "10.0.0.20"', 'db = "10.0.0.20"\nworker = ["10.0.0.31"]')
    )
    config = loaded.config
    assert config.app_hosts == ["10.0.0.11", "10.0.0.12", "10.0.0.31"]
    assert config.background_host == "10.0.0.31" and role_of(loaded, "10.0.0.31") == "worker"
    plain = project(tmp_path, FOUR).config
    assert plain.background_host == "10.0.0.11"  # (no worker: the first web host)
    for change, says in [
        ('worker = ["10.0.0.12"]', "names a host that has another role"),
        ('worker = ["10.0.0.20"]', "names a host that has another role"),
    ]:
        with pytest.raises(ConfigError) as info:
            project(tmp_path, FOUR.replace('db = "10.0.0.20"', f'db = "10.0.0.20"\n{change}'))
        assert says in info.value.message

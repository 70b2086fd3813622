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

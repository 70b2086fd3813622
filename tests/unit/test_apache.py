"""Reading an Apache vhost, editing it for onebox and back, and adopt's onebox.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from onebox import adopt
from onebox.agent import adopt as agent_adopt
from onebox.agent import apache_config, apache_site
from onebox.agent.paths import AppPaths
from onebox.config import load_config
from onebox.detect import detect
from tests.e2e import classic

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "inventory"
INCLUDE = Path("/etc/apache2/onebox/inventory.conf")


def test_the_vhost_is_read_as_apache_reads_it():
    hosts = apache_config.virtual_hosts_in(classic.SITE, "inventory.conf")
    assert [(h.address, h.port, h.names) for h in hosts] == [
        ("*:80", 80, ["inventory.test"]),
        ("*:443", 443, ["inventory.test"]),
    ]
    tls = hosts[1]
    daemon = agent_adopt.daemon_options(tls)
    assert daemon["name"] == "inventory"
    assert daemon["python-home"] == "/var/www/inventory/venv"  # (a continued line)
    assert daemon["processes"] == "2"
    assert tls.first("wsgiscriptalias") == ["/", "/var/www/inventory/inventory/wsgi.py"]
    assert tls.values("alias")[0] == ["/static/", "/var/www/inventory/static/"]


def test_onebox_comments_out_mod_wsgi_and_puts_it_back_exactly():
    edited = apache_site.with_onebox(classic.SITE, INCLUDE, {"/static/", "/media/"})
    marked = [line for line in edited.splitlines() if line.startswith(apache_site.MARK)]
    assert any("WSGIScriptAlias /" in line for line in marked)
    assert any("processes=2" in line for line in marked)  # the continuation too
    assert any("Alias /static/" in line for line in marked)
    assert not any("SSLCertificateFile" in line for line in marked)  # TLS stays
    assert edited.count(f"Include {INCLUDE}") == 1
    assert edited.index(f"Include {INCLUDE}") > edited.index("*:443")  # in the WSGI vhost
    assert apache_site.with_onebox(edited, INCLUDE, {"/static/"}) == edited  # once only
    assert apache_site.without_onebox(edited, INCLUDE) == classic.SITE


def test_the_site_file_names_what_it_serves():
    site = "Alias /static/ /srv/x/current/.onebox/static/\nAlias /media/ /srv/x/shared/media/\n"
    served = apache_site.url_prefixes_of(site, AppPaths("x"))
    assert set(served.values()) == {"/static/", "/media/"}
    assert served == {"static_url": "/static/", "media_url": "/media/"}


def test_apachectl_s_is_parsed():
    out = (
        "VirtualHost configuration:\n"
        "*:80                   inventory.test (/etc/apache2/sites-enabled/inventory.conf:1)\n"
        "*:443                  is a NameVirtualHost\n"
        "         default server shop.test (/etc/apache2/sites-enabled/shop.conf:2)\n"
        "         port 443 namevhost shop.test (/etc/apache2/sites-enabled/shop.conf:2)\n"
        "         port 443 namevhost blog.test (/etc/apache2/sites-enabled/blog.conf:9)\n"
    )
    parsed = apache_config.parse_served(out)
    assert {(e["address"], e["name"], e["line"]) for e in parsed} == {
        ("*:80", "inventory.test", 1),
        ("*:443", "shop.test", 2),
        ("*:443", "blog.test", 9),
    }


def test_the_settings_module_comes_from_the_wsgi_script(tmp_path):
    script = tmp_path / "wsgi.py"
    script.write_text('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings.prod")\n')
    assert agent_adopt.settings_module(script) == "shop.settings.prod"
    script.write_text("os.environ['DJANGO_SETTINGS_MODULE'] = 'shop.settings'\n")
    assert agent_adopt.settings_module(script) == "shop.settings"


def site_facts() -> dict:
    return {
        "vhost": {"file": str(classic.VHOST), "line": 6, "address": "*:443"},
        "names": ["inventory.test"],
        "daemon": {"name": "inventory"},
        "mode": "daemon",
        "code": "/var/www/inventory",
        "venv": "/var/www/inventory/venv",
        "user": "www-data",
        "settings": "inventory.settings",
        "setenv": {"INVENTORY_REGION": "eu-central", "STRIPE_SECRET": "sk_live_x"},
        "argv": [],
        "problems": [],
        "password_in": [{"file": "/x/settings.py", "mode": "0644", "world_readable": True}],
        "django": {
            "python": "3.9",
            "databases": {
                "default": {
                    "engine": "django.db.backends.mysql",
                    "name": "inventory",
                    "user": "inventory",
                    "host": "",
                    "port": "3307",
                }
            },
            "static_root": "/var/www/inventory/static",
            "media_root": "/srv/uploads",
        },
    }


def test_adopts_config_loads_and_keeps_secrets_out(tmp_path):
    project = shutil.copytree(FIXTURE, tmp_path / "inventory")
    text = adopt.config_text(detect(project), site_facts(), "sandbox:classic")
    (project / "onebox.toml").write_text(text)
    cfg = load_config(project / "onebox.toml")
    assert cfg.server.proxy == "apache" and cfg.app.name == "inventory"
    assert cfg.server.domain == "inventory.test"
    assert cfg.database.url == "mysql://inventory@localhost:3307/inventory"
    assert cfg.env.vars == {"INVENTORY_REGION": "eu-central"}
    assert "STRIPE_SECRET" in cfg.env.secrets and "sk_live_x" not in text
    assert cfg.apache.vhost == str(classic.VHOST) and cfg.apache.code == "/var/www/inventory"


def test_findings_name_the_traps(tmp_path):
    project = shutil.copytree(FIXTURE, tmp_path / "inventory")
    settings = project / "inventory" / "settings.py"
    settings.write_text(settings.read_text() + "import sys\nTESTING = sys.argv[1] == 'test'\n")
    facts = {"apache": {"mod_wsgi_python": "3.11"}}
    found = adopt.findings(site_facts(), facts, detect(project))
    texts = {f.level + ": " + f.text for f in found}
    assert any(t.startswith("fix: inventory/settings.py:") and "sys.argv" in t for t in texts)
    assert any("built for Python 3.11" in t and "Python 3.9" in t for t in texts)
    assert any(t.startswith("change: /x/settings.py (world-readable)") for t in texts)
    assert any(t.startswith("fix: MEDIA_ROOT is /srv/uploads") for t in texts)
    assert any("SetEnv INVENTORY_REGION, STRIPE_SECRET" in t for t in texts)


def test_a_vhost_onebox_edited_still_reads_as_the_site_it_was():
    edited = apache_site.with_onebox(classic.SITE, INCLUDE, {"/static/", "/media/"})
    tls = apache_config.virtual_hosts_in(edited, "x")[1]
    assert tls.first("wsgiscriptalias") == ["/", "/var/www/inventory/inventory/wsgi.py"]
    assert agent_adopt.daemon_options(tls)["processes"] == "2"

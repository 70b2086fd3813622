from pathlib import Path

from onebox.api.server import rendered_files, resolve_target, tls_internal
from onebox.config import Config, Project


def project(tmp_path: Path, **server) -> Project:
    config = Config.model_validate(
        {
            "app": {
                "name": "shop",
                "settings": "config.settings",
                "wsgi": "config.wsgi:application",
                "manage": "src/manage.py",
                "workers": 3,
            },
            "server": {"host": "203.0.113.7", **server},
        }
    )
    return Project(root=tmp_path, source=tmp_path / "onebox.toml", config=config)


def test_unit_file_keeps_secrets_off_the_command_line(tmp_path):
    unit = rendered_files(project(tmp_path), "203.0.113.7")["unit"]
    assert "EnvironmentFile=/etc/onebox/shop.env" in unit
    assert "gunicorn onebox_wsgi:application" in unit
    assert "Environment=ONEBOX_WSGI=config.wsgi:application" in unit
    assert "--bind unix:/run/onebox-shop/%i.sock" in unit
    # sized per release on the server (sizing.py); the unit's own values are for releases
    # made before onebox sized them
    assert "--workers ${ONEBOX_WORKERS}" in unit and "--threads ${ONEBOX_THREADS}" in unit
    assert "Environment=ONEBOX_WORKERS=3 ONEBOX_THREADS=1 ONEBOX_WORKER_CLASS=sync" in unit
    assert "--keep-alive 10" in unit  # longer than the proxy keeps connections idle
    assert "WorkingDirectory=/srv/shop/slots/%i/src" in unit
    assert "User=shop" in unit and "ProtectSystem=strict" in unit
    assert "--graceful-timeout 30" in unit and "TimeoutStopSec=40" in unit  # [deploy] drain


def test_site_for_an_ip_uses_the_internal_ca(tmp_path):
    site = rendered_files(project(tmp_path), "203.0.113.7")["site"]
    assert "\n203.0.113.7 {\n" in site
    assert "tls internal" in site
    assert "reverse_proxy unix//run/onebox-shop/live.sock" in site
    assert "handle_path ${static_url}*" in site
    assert "keepalive 2s" in site  # shorter than gunicorn's --keep-alive


def test_site_for_a_domain_gets_a_public_certificate(tmp_path):
    p = project(tmp_path, domain="shop.example.com")
    assert not tls_internal(p, "shop.example.com")
    assert "tls internal" not in rendered_files(p, "shop.example.com")["site"]
    assert tls_internal(p, "shop.lan") and tls_internal(p, "intranet")
    assert tls_internal(project(tmp_path, tls="internal"), "shop.example.com")


def test_project_templates_override_builtin(tmp_path):
    (tmp_path / ".onebox" / "templates").mkdir(parents=True)
    (tmp_path / ".onebox" / "templates" / "tmpfiles.conf.j2").write_text("custom {{ app }}\n")
    assert rendered_files(project(tmp_path), "x")["tmpfiles"] == "custom shop\n"


def test_resolve_target_forms(tmp_path):
    t = resolve_target("deploy@203.0.113.7:2222", project(tmp_path))
    assert (t.user, t.host, t.port) == ("deploy", "203.0.113.7", 2222)
    t = resolve_target("myalias", project(tmp_path, user="admin"))
    assert (t.user, t.host, t.port) == ("admin", "myalias", None)


def test_backup_jobs_are_sandboxed_and_offline_unless_they_need_the_network(tmp_path):
    files = rendered_files(project(tmp_path), "203.0.113.7")
    job = files["backup_service"]
    assert "ProtectSystem=strict" in job and "CapabilityBoundingSet=CAP_DAC_OVERRIDE" in job
    assert "PrivateNetwork=yes" in job and "RestrictAddressFamilies=AF_UNIX\n" in job
    sftp = project(tmp_path)
    config = sftp.config.model_copy(
        update={"backup": sftp.config.backup.model_copy(update={"offsite": "sftp:b@h:/x"})}
    )
    networked = rendered_files(sftp.model_copy(update={"config": config}), "203.0.113.7")
    assert "PrivateNetwork=yes" not in networked["backup_service"]
    local = config.model_copy(
        update={"backup": config.backup.model_copy(update={"offsite": "/mnt/usb/shop"})}
    )
    disk = rendered_files(sftp.model_copy(update={"config": local}), "203.0.113.7")
    assert "PrivateNetwork=yes" in disk["backup_service"]
    assert "-/var/log/onebox -/mnt/usb/shop" in disk["backup_service"]


def test_hsts_is_two_years_with_a_public_certificate(tmp_path):
    lan = rendered_files(project(tmp_path), "203.0.113.7")["site"]
    assert 'Strict-Transport-Security "max-age=31536000"' in lan
    public = rendered_files(project(tmp_path, domain="shop.example.com"), "shop.example.com")
    assert 'Strict-Transport-Security "max-age=63072000"' in public["site"]
    assert '?X-Frame-Options "DENY"' in public["site"] and "-Server" in public["site"]


def test_user_text_is_never_read_as_markup(capsys):
    """A build command `echo [/]` or a step named `[prod]` prints as typed (rich markup
    in them once crashed the client mid-deploy, or vanished)."""
    from onebox.errors import OneboxError
    from onebox.output import HumanReporter

    reporter = HumanReporter(verbose=True)
    for status in ("start", "changed", "failed"):
        event = {"event": "step", "name": "build: echo [/]", "status": status, "seconds": 1}
        reporter.event({**event, "detail": "[prod] [bold]"})
    reporter.event({"event": "log", "text": "[prod] [/] log"})
    reporter.notice("[prod] notice [/]")
    reporter.error(OneboxError("[prod] failed [/]", hint="[red]x[/]", output="[/]", host="[h]"))
    err = capsys.readouterr().err
    for shown in ("build: echo [/]", "[prod] [bold]", "[prod] [/] log", "[prod] notice [/]",
                  "[prod] failed [/]", "[red]x[/]", "[h]"):  # fmt: skip
        assert shown in err, shown


def test_tables_print_user_text_as_it_is(capsys):
    """History details and commits are the server's and the user's strings: a table cell
    is plain text, never markup."""
    from onebox import views
    from onebox.output import HumanReporter

    reporter = HumanReporter()
    history = {"entries": [{"time": "t", "action": "deploy", "result": "ok", "by": "ada",
                            "login": "onebox", "detail": "[prod] [bold]x[/]"}]}  # fmt: skip
    reporter.result(views.history_table(history))
    releases = {"releases": [{"release_id": "r2", "live": True, "commit": "[/]"},
                             {"release_id": "r1", "live": False}]}  # fmt: skip
    reporter.result(views.releases_table(releases))
    out = capsys.readouterr().out
    assert "[prod] [bold]x[/]" in out and "ada (onebox)" in out
    assert "* r2" in out and "  r1" in out and "[/]" in out

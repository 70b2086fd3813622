from pathlib import Path

import pytest

from onebox.config import load_config, load_project, locate
from onebox.errors import ConfigError

GOOD = """
[app]
name = "shop"
settings = "config.settings.production"
wsgi = "config.wsgi:application"

[server]
host = "203.0.113.7"
"""


def write(tmp_path: Path, text: str, name: str = "onebox.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.app.name == "shop"
    assert config.app.workers is None and config.app.threads is None  # sized on the server
    assert config.database.engine == "sqlite"
    assert config.server.tls == "auto"


def test_unknown_key_names_line_and_suggests(tmp_path):
    text = GOOD.replace('host = "203.0.113.7"', 'hots = "203.0.113.7"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = info.value.message
    assert (
        f"{tmp_path / 'onebox.toml'}:8: unknown key 'server.hots' (did you mean 'host'?)" in message
    )


def test_unknown_section_suggests(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD + "\n[databse]\nengine = 'sqlite'\n"))
    assert "unknown key 'databse' (did you mean 'database'?)" in info.value.message
    assert ":10:" in info.value.message


def test_missing_key_and_bad_value(tmp_path):
    text = GOOD.replace('settings = "config.settings.production"\n', "").replace(
        'name = "shop"', 'name = "My Shop"'
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "missing key 'app.settings'" in info.value.message
    assert "'app.name' must be lowercase letters" in info.value.message


def test_wrong_type_names_key(tmp_path):
    text = GOOD + '\n[deploy]\nbuild = "npm run build"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "onebox.toml:11: 'deploy.build'" in info.value.message


def test_toml_syntax_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[app\nname=1"))
    assert "line 1" in info.value.message


def test_pyproject_tool_table(tmp_path):
    body = GOOD.replace("[app]", "[tool.onebox.app]").replace("[server]", "[tool.onebox.server]")
    write(tmp_path, '[project]\nname = "shop"\n' + body, "pyproject.toml")
    (tmp_path / "sub").mkdir()
    project = load_project(tmp_path / "sub")
    assert project.root == tmp_path
    assert project.config.server.host == "203.0.113.7"


def test_no_config_says_run_init(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert "onebox init" in (info.value.hint or "")


def test_locate_nested_keys():
    text = "[app]\nname = 'x'\n\n[env]\nvars = {}\n[env.more]\nkey = 1\n"
    assert locate(text, ("app", "name")) == 2
    assert locate(text, ("env",)) == 4
    assert locate(text, ("env", "more", "key")) == 7


def test_env_values_must_be_single_lines(tmp_path):
    text = GOOD + '\n[env]\nvars = { TITLE = """two\nlines""" }\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "'env.vars.TITLE' holds a control character" in info.value.message


def test_security_skips_need_a_reason_and_a_known_name(tmp_path):
    reasonless = GOOD + '\n[security]\nskip = { firewall = " " }\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, reasonless))
    assert "say why firewall is skipped" in info.value.message
    unknown = GOOD + '\n[security]\nskip = { selinux = "no" }\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, unknown))
    assert "'selinux' is not a protection onebox sets up" in info.value.message
    hour = GOOD + '\n[security]\nreboot_at = "25:00"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, hour))
    assert "an hour of the day" in info.value.message
    sudo = GOOD + '\n[security]\ndeploy_sudo = "everything"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, sudo))
    assert "deploy_sudo" in info.value.message and "'agent' or 'all'" in info.value.message


def test_the_deploy_user_cannot_log_in_where_ssh_is_left_alone(tmp_path):
    text = GOOD.replace("[server]\n", '[server]\nuser = "onebox"\n')
    text += '\n[security]\nskip = { ssh = "a bastion host manages it" }\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "drop the skip" in info.value.message


def test_setup_writes_the_deploy_user_and_keeps_comments(tmp_path):
    from onebox.config import set_server_user

    path = write(
        tmp_path,
        GOOD.replace('host = "203.0.113.7"', 'host = "root@203.0.113.7"\n# user = "root"  # note'),
    )
    assert set_server_user(path, "onebox")
    text = path.read_text()
    assert 'host = "203.0.113.7"' in text and '# user = "root"  # note' in text
    assert load_config(path).server.user == "onebox"
    assert not set_server_user(path, "onebox")  # already there: the file is not touched


def test_the_deploy_user_goes_into_tool_onebox_in_pyproject(tmp_path):
    from onebox.config import load_project, set_server_user

    body = GOOD.replace("[app]", "[tool.onebox.app]").replace("[server]", "[tool.onebox.server]")
    path = write(tmp_path, '[project]\nname = "shop"\n' + body, "pyproject.toml")
    assert set_server_user(path, "onebox")
    assert "\n[server]" not in path.read_text()  # no top-level table onebox never reads
    assert load_project(tmp_path).config.server.user == "onebox"


def test_the_deploy_user_under_a_commented_server_header(tmp_path):
    from onebox.config import set_server_user

    path = write(tmp_path, GOOD.replace("[server]\n", "[server]   # the box in the closet\n"))
    assert set_server_user(path, "onebox")
    text = path.read_text()
    assert text.count("[server]") == 1 and "# the box in the closet" in text
    assert load_config(path).server.user == "onebox"
    assert not list(tmp_path.glob(".*tmp"))


# What reached root's unit files before: each value must be refused when the file loads.
INJECTIONS = [
    ("app", "wsgi", "config.wsgi:application\nExecStartPre=+/bin/touch /root/X"),
    ("app", "name", "shop\n"),
    ("app", "name", "shop\nExecStartPre=+/bin/touch /root/X"),
    ("app", "settings", "config.settings; touch /root/X"),
    ("app", "wsgi", "config.wsgi:application --bind 0.0.0.0:80"),
    ("app", "manage", "../../etc/manage.py"),
    ("app", "manage", "src/manage.py\nUser=root"),
    ("app", "health_path", "/he alth/"),
    ("app", "health_path", "/health\r\nX: y"),
    ("server", "domain", "shop.test\nimport /etc/passwd"),
    ("server", "domain", "shop.test {"),
    ("server", "domain", "https://shop.test"),
    ("server", "host", "-oProxyCommand=touch /tmp/X"),
    ("backup", "offsite", "/mnt/backup\nExecStartPre=+/bin/touch /root/X"),
    ("backup", "offsite", "/mnt/back up"),
    ("backup", "offsite", "/mnt/%h"),
    ("backup", "schedule", "daily\nExecStartPre=+/bin/touch /root/X"),
    ("backup", "schedule", "whenever"),
    ("backup", "verify", "Sun *-*-* 04:15:00 extra words"),
]


@pytest.mark.parametrize(("section", "key", "value"), INJECTIONS)
def test_values_that_land_in_unit_files_are_checked(tmp_path, section, key, value):
    import json

    text = GOOD if section not in ("backup",) else GOOD + "\n[backup]\n"
    lines = text.splitlines()
    header = lines.index(f"[{section}]")
    lines = [line for line in lines if not line.startswith(f"{key} =")] or lines
    header = lines.index(f"[{section}]")
    lines.insert(header + 1, f"{key} = {json.dumps(value)}")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "\n".join(lines) + "\n"))
    assert f"{key}" in info.value.message


def test_a_scheme_in_the_domain_names_the_fix(tmp_path):
    text = GOOD + 'domain = "https://shop.test/"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert 'without scheme or path: domain = "shop.test"' in info.value.message


@pytest.mark.parametrize(
    "calendar",
    [
        "daily",
        "weekly",
        "off",
        "*-*-* 03:15:00",
        "Sun *-*-* 04:15:00",
        "Mon..Fri 22:30",
        "*-*-1 00:00",
        "Sat,Sun 10:00",
        "2026-12-24 18:00:00 UTC",
        "hourly",
        "*:0/15",
    ],
)
def test_good_calendars_pass(tmp_path, calendar):
    import json

    config = load_config(write(tmp_path, GOOD + f"\n[backup]\nschedule = {json.dumps(calendar)}\n"))
    assert config.backup.schedule == calendar


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "onebox.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_config(path).app.name == "shop"


def test_setup_names_the_deploy_user_before_root_login_goes_off(tmp_path, monkeypatch):
    """If writing onebox.toml failed after the lockdown, the file would still name root,
    whom the server now refuses."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    from onebox.api import provisioning as api
    from onebox.config import load_project

    write(tmp_path, GOOD.replace('host = "203.0.113.7"', 'host = "root@203.0.113.7"'))
    project = load_project(tmp_path)
    order = []
    target = SimpleNamespace(name="203.0.113.7", host="203.0.113.7", port=None)
    server = SimpleNamespace(ssh=SimpleNamespace(target=target), address="203.0.113.7")

    @contextmanager
    def connect(*args):
        yield server

    def confirm(project, target, changes, reporter):
        order.append(("lockdown", load_project(tmp_path).config.server.user))

    monkeypatch.setattr(api, "connect", connect)
    monkeypatch.setattr(api, "facts", lambda server, reporter: {"python": "3.11.2"})
    monkeypatch.setattr(api, "uv_version", lambda: "0.9.0")
    monkeypatch.setattr(api.remote, "call", lambda *a: {"confirm": ["ssh"]})
    monkeypatch.setattr(api, "confirm_access", confirm)
    monkeypatch.setattr(api.no_deploy_user, "forget", lambda target: None)
    reporter = SimpleNamespace(event=lambda e: None, notice=order.append)
    api.setup(project, None, reporter)
    assert order[0] == ("lockdown", "onebox")  # written first
    assert "logs in as 'onebox' from now on" in order[1]


@pytest.mark.parametrize(
    ("app", "says"),
    [
        ('worker_class = "sync"\nthreads = 4', "threads = 4 needs the gthread worker"),
        ('worker_class = "gthread; rm -rf /"', "is not a gunicorn worker class"),
        ('asgi = "shop.asgi:application"\nworker_class = "gevent"', "uvicorn's worker"),
        ("threads = 0", "greater than or equal to 1"),
    ],
)
def test_worker_settings_that_cannot_work_are_refused(tmp_path, app, says):
    text = GOOD.replace("[server]", f"{app}\n\n[server]", 1)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert says in str(info.value)


def test_media_in_a_bucket_gives_the_app_its_settings_and_wants_the_keys(tmp_path):
    text = GOOD + (
        '\n[media]\nstorage = "s3"\nbucket = "shop-media"\n'
        'endpoint = "https://fsn1.your-objectstorage.com/"\nregion = "eu-central"\n'
    )
    media = load_config(write(tmp_path, text)).media
    assert media.shared and media.secrets == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    env = media.env()
    # django-storages' names, boto3's own, and cookiecutter-django's DJANGO_AWS_*
    assert env["AWS_STORAGE_BUCKET_NAME"] == env["DJANGO_AWS_STORAGE_BUCKET_NAME"] == "shop-media"
    assert (
        env["AWS_S3_ENDPOINT_URL"]
        == env["AWS_ENDPOINT_URL_S3"]
        == ("https://fsn1.your-objectstorage.com")
    )
    assert env["AWS_DEFAULT_REGION"] == env["AWS_S3_REGION_NAME"] == "eu-central"
    # The keys are secrets on the server: the DJANGO_ names refer to them, never hold them.
    assert env["DJANGO_AWS_SECRET_ACCESS_KEY"] == "${AWS_SECRET_ACCESS_KEY}"
    assert load_config(write(tmp_path, GOOD)).media.env() == {}


@pytest.mark.parametrize(
    ("media", "says"),
    [
        ('storage = "s3"', "needs the bucket's name"),
        ('storage = "s3"\nbucket = "Shop_Media"', "must be an S3 bucket name"),
        ('storage = "s3"\nbucket = "m"\nendpoint = "s3.example.com"', "the S3 API's URL"),
        ('bucket = "shop-media"', 'bucket, endpoint and region are for storage = "s3"'),
        ("backup = false", 'backup = false is for storage = "s3"'),
        ('storage = "nfs"', "'local' or 's3'"),
    ],
)
def test_media_settings_that_cannot_work_are_refused(tmp_path, media, says):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD + f"\n[media]\n{media}\n"))
    assert says in str(info.value)

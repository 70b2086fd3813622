from pathlib import Path

import pytest

from onebox.detect import detect
from onebox.errors import ProjectError
from onebox.init import init_project

MANAGE = """import os, sys
if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{module}")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
"""


def make(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_simple_project(tmp_path):
    root = make(
        tmp_path / "My_Site",
        {
            "manage.py": MANAGE.format(module="mysite.settings"),
            "mysite/__init__.py": "",
            "mysite/settings.py": "WSGI_APPLICATION = 'mysite.wsgi.application'\n"
            "STATIC_ROOT = BASE_DIR / 'static'\n",
            "mysite/wsgi.py": "",
            "requirements.txt": "django\n",
        },
    )
    found = detect(root)
    assert (found.name, found.settings, found.wsgi) == (
        "my-site",
        "mysite.settings",
        "mysite.wsgi:application",
    )
    assert found.requirements == "requirements.txt"
    assert found.static_root == "BASE_DIR / 'static'"


def test_split_settings_package_prefers_production(tmp_path):
    root = make(
        tmp_path / "proj",
        {
            "src/manage.py": MANAGE.format(module="config.settings.local"),
            "src/config/__init__.py": "",
            "src/config/settings/__init__.py": "",
            "src/config/settings/base.py": (
                "import os\nWSGI_APPLICATION = 'config.wsgi.application'\n"
                "API = os.environ['PAYMENT_TOKEN']\n"
            ),
            "src/config/settings/local.py": "from .base import *\n",
            "src/config/settings/production.py": "from .base import *\nimport os\n"
            "SECRET_KEY = os.environ['DJANGO_SECRET_KEY']\n",
            "src/config/wsgi.py": "",
            "pyproject.toml": '[project]\nrequires-python = ">=3.12"\ndependencies = ["django"]\n',
        },
    )
    found = detect(root)
    assert found.manage == "src/manage.py"
    assert found.settings == "config.settings.production"
    assert found.wsgi == "config.wsgi:application"
    assert found.requirements == "pyproject.toml"
    assert found.python == ">=3.12"
    assert found.required_env == ["PAYMENT_TOKEN"]  # DJANGO_SECRET_KEY is onebox's to provide


def test_settings_that_crash_on_import_are_only_read(tmp_path):
    root = make(
        tmp_path / "p",
        {
            "manage.py": MANAGE.format(module="p.settings"),
            "p/__init__.py": "",
            "p/settings.py": "raise SystemExit('never import me')\n",
            "p/wsgi.py": "",
        },
    )
    assert detect(root).wsgi == "p.wsgi:application"


def test_not_a_django_project(tmp_path):
    with pytest.raises(ProjectError) as info:
        detect(tmp_path)
    assert "no manage.py" in info.value.message


def test_several_projects(tmp_path):
    make(tmp_path, {"a/manage.py": "", "b/manage.py": ""})
    with pytest.raises(ProjectError) as info:
        detect(tmp_path)
    assert "a/manage.py, b/manage.py" in info.value.message
    assert "onebox init PATH" in (info.value.hint or "")


def test_syntax_error_names_file_and_line(tmp_path):
    make(tmp_path, {"manage.py": MANAGE.format(module="x.settings"), "x/settings.py": "a = (\n"})
    with pytest.raises(ProjectError) as info:
        detect(tmp_path)
    assert "x/settings.py:1" in info.value.message


def test_requirements_preference(tmp_path):
    root = make(
        tmp_path,
        {
            "manage.py": MANAGE.format(module="x.settings"),
            "x/settings.py": "",
            "x/wsgi.py": "",
            "requirements/base.txt": "django\n",
            "requirements/production.txt": "-r base.txt\n",
        },
    )
    assert detect(root).requirements == "requirements/production.txt"
    (root / "Pipfile.lock").write_text("{}")
    assert detect(root).requirements == "Pipfile.lock"


def test_init_writes_a_config_that_loads(tmp_path):
    root = make(
        tmp_path / "site",
        {
            "manage.py": MANAGE.format(module="site_cfg.settings"),
            "site_cfg/settings.py": "import os\nTOKEN = os.environ['MAIL_PASSWORD']\n",
            "site_cfg/wsgi.py": "",
            "requirements.txt": "django\n",
        },
    )
    path, _found, filled = init_project(root, host="203.0.113.9")
    text = path.read_text()
    assert filled is None  # written anew
    assert 'host = "203.0.113.9"' in text
    assert 'secrets = ["MAIL_PASSWORD"]' in text
    assert init_project(root)[2] == []  # kept: nothing to fill in
    assert path.read_text() == text


def test_init_keeps_a_hand_written_config_and_fills_in_what_it_lacks(tmp_path):
    root = make(
        tmp_path / "site",
        {
            "manage.py": MANAGE.format(module="site_cfg.settings"),
            "site_cfg/settings.py": "import os\nTOKEN = os.environ['MAIL_PASSWORD']\n",
            "site_cfg/wsgi.py": "",
            "requirements.txt": "django\n",
            "onebox.toml": '# ours\n[server]\nhost = "box.lan"  # the office box\n',
        },
    )
    path, _found, filled = init_project(root, host="other.lan")
    text = path.read_text()
    assert text.startswith('# ours\n[server]\nhost = "box.lan"  # the office box\n')
    assert "app.settings" in filled and "server.host" not in filled
    assert 'settings = "site_cfg.settings"' in text and 'secrets = ["MAIL_PASSWORD"]' in text
    rewritten = init_project(root, host="other.lan", force=True)[0].read_text()
    assert 'host = "other.lan"' in rewritten


def test_settings_found_without_manage_py_naming_them(tmp_path):
    manage = "import sys\nfrom django.core.management import execute_from_command_line\n"
    files = {
        "manage.py": manage + "execute_from_command_line(sys.argv)\n",
        "press/__init__.py": "",
        "press/settings/__init__.py": "",
        "press/settings/base.py": "INSTALLED_APPS = []\n",
        "press/settings/dev.py": "from .base import *\nDEBUG = True\n",
        "press/settings/production.py": "from .base import *\n",
        "press/wsgi.py": "",
    }
    assert detect(make(tmp_path / "a", files)).settings == "press.settings.production"
    del files["press/settings/production.py"]
    files["press/settings/staging.py"] = "from .base import *\n"
    with pytest.raises(ProjectError) as unclear:
        detect(make(tmp_path / "b", files))
    assert "candidates: press.settings.base, press.settings.dev, press.settings.staging" in str(
        unclear.value.message
    )
    assert unclear.value.hint == "say which: onebox init --settings MODULE"
    assert detect(tmp_path / "b", "press.settings.staging").settings == "press.settings.staging"


def test_a_pinned_requirements_file_wins_over_an_unlocked_pipfile(tmp_path):
    root = make(tmp_path / "p", {"requirements.txt": "Django==5.2.8\n", "Pipfile": "[packages]\n"})
    from onebox.detect import find_requirements

    assert find_requirements(root) == "requirements.txt"
    (root / "requirements.txt").unlink()
    assert find_requirements(root) == "Pipfile"


@pytest.mark.parametrize(
    ("settings", "requirements", "engine"),
    [
        ("", "django\n", "sqlite"),
        ("DATABASES = {'default': {'ENGINE': 'django.db.backends.mysql'}}\n", "django\n", "mysql"),
        ("", "Django\nmysqlclient>=2\n", "mysql"),
        ("", "django\npsycopg[binary]\n", "postgresql"),
        ("import dj_database_url\n", "django\nPyMySQL\n", "mysql"),
    ],
)
def test_database_engine_is_detected_and_written(tmp_path, settings, requirements, engine):
    root = make(
        tmp_path / "site",
        {
            "manage.py": MANAGE.format(module="site_.settings"),
            "site_/__init__.py": "",
            "site_/settings.py": settings,
            "site_/wsgi.py": "",
            "requirements.txt": requirements,
        },
    )
    assert detect(root).engine == engine
    config, _, _ = init_project(root)
    assert f'engine = "{engine}"' in config.read_text()


def test_unsafe_settings_are_named_with_the_line(tmp_path):
    files = {
        "manage.py": MANAGE.format(module="site_.settings"),
        "site_/__init__.py": "",
        "site_/settings.py": "WSGI_APPLICATION = 'site_.wsgi.application'\n"
        "DEBUG = True\nSECRET_KEY = 'django-insecure-abc'\n",
        "site_/wsgi.py": "",
    }
    notes = detect(make(tmp_path / "a", files)).notes
    assert any(n.startswith("DEBUG = True (site_/settings.py:2)") for n in notes), notes
    assert any("SECRET_KEY is written in site_/settings.py:3" in n for n in notes), notes
    # what the proxy provides (HSTS, redirect, secure cookies) is no longer asked for
    assert not any("SECURE_PROXY_SSL_HEADER" in n for n in notes)


ENV_SETTINGS = """
import os
import environ
from decouple import config
env = environ.Env(FEATURE_X=(bool, False))
SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
API = env("PAYMENT_TOKEN")
REGION = env.str("AWS_REGION")
LIMIT = env.int("RATE_LIMIT", 10)
FLAG = env("FEATURE_X")
SENTRY = os.environ.get("SENTRY_DSN")
HOME = os.getenv("HOME_URL", "/")
MAIL = config("MAIL_HOST")
MAIL_PORT = config("MAIL_PORT", default=25, cast=int)
TOKEN = os.environ["SHOP_TOKEN"]
if "REDIS_URL" in os.environ:
    CACHE = os.environ["REDIS_URL"]
if os.environ.get("S3_BUCKET"):
    BUCKET = os.environ["S3_BUCKET"]
try:
    EXTRA = os.environ["EXTRA"]
except KeyError:
    EXTRA = None
os.environ["SET_HERE"] = "1"
"""


def test_required_and_optional_environment_variables(tmp_path):
    files = {
        "manage.py": MANAGE.format(module="site_.settings"),
        "site_/__init__.py": "",
        "site_/settings.py": ENV_SETTINGS,
        "site_/wsgi.py": "",
    }
    found = detect(make(tmp_path / "a", files))
    assert found.required_env == ["PAYMENT_TOKEN", "AWS_REGION", "MAIL_HOST", "SHOP_TOKEN"]
    assert set(found.optional_env) == {
        "DJANGO_DEBUG", "RATE_LIMIT", "FEATURE_X", "SENTRY_DSN", "HOME_URL", "MAIL_PORT",
        "REDIS_URL", "S3_BUCKET", "EXTRA",
    }  # fmt: skip
    debug = found.switches["DEBUG"]
    assert (debug.var, debug.where) == ("DJANGO_DEBUG", "site_/settings.py:7")
    assert debug.source == 'DEBUG = env.bool("DJANGO_DEBUG", default=False)'
    assert found.switches["SECRET_KEY"].var == "DJANGO_SECRET_KEY"


def test_a_hand_written_config_needs_only_what_cannot_be_detected(tmp_path):
    from onebox.config import load_config

    root = make(
        tmp_path / "My Site",
        {
            "manage.py": MANAGE.format(module="site_cfg.settings"),
            "site_cfg/settings.py": "WSGI_APPLICATION = 'site_cfg.wsgi.application'\n",
            "site_cfg/wsgi.py": "",
            "requirements.txt": "Django==5.2.8\n",
            "onebox.toml": '[server]\nhost = "box.lan"\n',
        },
    )
    config = load_config(root / "onebox.toml")
    assert (config.app.name, config.app.settings, config.app.wsgi) == (
        "my-site",
        "site_cfg.settings",
        "site_cfg.wsgi:application",
    )
    assert config.build.requirements == "requirements.txt"


def test_offline_compression_becomes_a_release_command(tmp_path):
    root = make(
        tmp_path / "c",
        {
            "src/manage.py": MANAGE.format(module="c.settings"),
            "src/c/settings.py": "INSTALLED_APPS = ['compressor']\nCOMPRESS_OFFLINE = True\n",
            "src/c/wsgi.py": "",
            "requirements.txt": "django-compressor==4.6\n",
        },
    )
    config, found, _ = init_project(root)
    assert found.release_commands == ["python src/manage.py compress --force"]
    assert 'release = ["python src/manage.py compress --force"]' in config.read_text()


def test_init_quotes_what_it_writes_and_leaves_no_temporary_file(tmp_path):
    import dataclasses
    import tomllib

    from onebox.templating import render

    root = make(
        tmp_path / "site",
        {
            "manage.py": MANAGE.format(module="mysite.settings"),
            "mysite/__init__.py": "",
            "mysite/settings.py": "WSGI_APPLICATION = 'mysite.wsgi.application'\n",
            "mysite/wsgi.py": "",
            "requirements.txt": "django\n",
        },
    )
    with pytest.raises(ProjectError.__mro__[1]) as refused:  # (ConfigError)
        init_project(root, host='a"b', domain="shop.example.com")
    assert refused.value.message.startswith("--host 'a\"b' must be an address")
    assert not (root / "onebox.toml").exists()
    path, found, _ = init_project(root, host="203.0.113.7", domain="shop.example.com")
    assert tomllib.loads(path.read_text())["server"]["host"] == "203.0.113.7"
    assert sorted(p.name for p in root.iterdir()) == [
        "manage.py", "mysite", "onebox.toml", "requirements.txt",
    ]  # fmt: skip
    # what init writes from the project itself is quoted as TOML, whatever it holds
    command = "python manage.py shell -c \"print('hi')\" \\"
    found = dataclasses.replace(found, release_commands=[command])
    text = render("onebox.toml.j2", d=found, host="", domain="")
    assert tomllib.loads(text)["deploy"]["release"] == [command]


# cookiecutter-django's production settings, as it writes them with the S3 option
COOKIECUTTER_S3 = """from .base import *  # noqa
from .base import env

SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["example.com"])
AWS_ACCESS_KEY_ID = env("DJANGO_AWS_ACCESS_KEY_ID")
AWS_SECRET_ACCESS_KEY = env("DJANGO_AWS_SECRET_ACCESS_KEY")
AWS_STORAGE_BUCKET_NAME = env("DJANGO_AWS_STORAGE_BUCKET_NAME")
AWS_QUERYSTRING_AUTH = False
AWS_S3_REGION_NAME = env("DJANGO_AWS_S3_REGION_NAME", default=None)
AWS_S3_CUSTOM_DOMAIN = env("DJANGO_AWS_S3_CUSTOM_DOMAIN", default=None)
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"location": "media", "file_overwrite": False},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MAILGUN_API_KEY = env("MAILGUN_API_KEY")
"""


def test_a_project_storing_uploads_in_s3_gets_media_in_a_bucket(tmp_path):
    import tomllib

    root = make(
        tmp_path / "shop",
        {
            "manage.py": MANAGE.format(module="config.settings.local"),
            "config/__init__.py": "",
            "config/settings/__init__.py": "",
            "config/settings/base.py": "import environ\nenv = environ.Env()\n",
            "config/settings/local.py": "from .base import *\n",
            "config/settings/production.py": COOKIECUTTER_S3,
            "config/wsgi.py": "",
            "requirements.txt": "django\ndjango-storages[s3]\n",
        },
    )
    path, found, _ = init_project(root, host="203.0.113.7", domain="shop.example.com")
    assert found.media_storage == "s3"
    written = tomllib.loads(path.read_text())
    assert written["media"] == {"storage": "s3", "bucket": "shop-media"}
    # [media] gives the bucket's and the keys' names: only the app's own secret is asked for
    assert found.required_env == ["MAILGUN_API_KEY"]
    assert any('[media] storage = "s3" is proposed' in note for note in found.notes)

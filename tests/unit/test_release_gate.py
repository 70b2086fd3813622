"""What goes into a release, Django's deployment check as a gate, manage's arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onebox.agent import deploy_check, manage_args
from onebox.agent.protocol import AgentError
from onebox.bundle import collect
from onebox.errors import ConfigError
from onebox.release_contents import (
    check_settings_shipped,
    explain_missing_module,
    settings_closure,
)


def message(ident: str, level: int = 30, msg: str = "...") -> dict:
    return {"id": ident, "level": level, "msg": msg, "hint": "", "obj": ""}


def test_what_the_proxy_provides_is_shown_not_fatal():
    shown = deploy_check.gate(
        [message(i) for i in ("security.W004", "security.W008", "security.W012")]
        + [message("newsletter.W001", msg="NEWSLETTER_FROM is not set")],
        {},
        set(),
    )
    assert shown[0] == (
        "security.W004, security.W008, security.W012: provided by onebox's proxy "
        "(HSTS, Secure cookies, the HTTPS redirect)"
    )
    assert "newsletter.W001: NEWSLETTER_FROM is not set (not fatal)" in shown


def test_debug_on_is_refused_naming_the_projects_switch():
    switch = {"var": "DJANGO_DEBUG", "where": "club/settings/base.py:7", "source": "DEBUG = x"}
    with pytest.raises(AgentError) as refused:
        deploy_check.gate(
            [message("security.W018"), message("security.W004")], {"DEBUG": switch}, set()
        )
    error = refused.value
    assert error.message == "Django's deployment check fails: security.W018; nothing was changed"
    assert "club/settings/base.py:7 reads it from DJANGO_DEBUG" in error.output
    assert "set it with `onebox env set DJANGO_DEBUG=...`" in error.output
    with pytest.raises(AgentError) as refused:
        deploy_check.gate([message("security.W018")], {"DEBUG": switch}, {"DJANGO_DEBUG"})
    assert "set on the server: `onebox env unset DJANGO_DEBUG`" in refused.value.output
    assert "security.W004" not in error.output


def test_errors_lead_the_headline_with_their_own_fix():
    with pytest.raises(AgentError) as refused:
        deploy_check.gate([message("security.W020"), message("shop.E001", 40, "broken")], {}, set())
    assert refused.value.message.startswith("Django's system check found errors: shop.E001")
    assert "ALLOWED_HOSTS is empty" in refused.value.output


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "club"
    files = {
        "manage.py": "",
        "club/__init__.py": "",
        "club/settings/__init__.py": "",
        "club/settings/base.py": "import os\nfrom club.limits import RATE\n",
        "club/settings/production.py": "from .base import *\nfrom . import secrets_local\n"
        "try:\n    from .local_settings import *\nexcept ImportError:\n    pass\n",
        "club/settings/local_settings.py": "DEBUG = True\n",
        "club/settings/secrets_local.py": "X = 1\n",
        "club/limits.py": "RATE = 1\n",
        ".env": "SECRET=1\n",
        "certs/site.pem": "-----\n",
        "static/dist/app.js": "js\n",
        ".gitignore": "club/settings/production.py\nstatic/dist/\nlocal_settings.py\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", ".")
    return root


def test_settings_closure_follows_imports_within_the_project(project):
    found = {
        p.relative_to(project).as_posix()
        for p in settings_closure(project, "club.settings.production")
    }
    assert found == {
        "club/__init__.py",
        "club/settings/__init__.py",
        "club/settings/production.py",
        "club/settings/base.py",
        "club/settings/secrets_local.py",
        "club/limits.py",
    }


def test_an_ignored_settings_module_is_refused_then_shipped_with_include(project):
    bundle = collect(project, [])
    with pytest.raises(ConfigError) as refused:
        check_settings_shipped(project, "manage.py", "club.settings.production", bundle)
    assert refused.value.message.startswith(
        "club/settings/production.py, which the settings module club.settings.production "
        "needs, would not be in the release: git ignores it (.gitignore:1:"
    )
    assert 'include = ["club/settings/production.py"]' in refused.value.hint
    included = collect(project, [], ["club/settings/production.py", "static/dist/**"])
    check_settings_shipped(project, "manage.py", "club.settings.production", included)
    assert Path("static/dist/app.js") in included.files


def test_secret_looking_files_are_left_out_and_said(project):
    bundle = collect(project, [])
    assert Path(".env") not in bundle.files and Path("certs/site.pem") not in bundle.files
    assert bundle.secrets_left_out == (".env", "certs/site.pem")
    shipped = collect(project, [], ["certs/site.pem"])
    assert Path("certs/site.pem") in shipped.files and shipped.secrets_left_out == (".env",)


def test_a_missing_module_of_the_working_tree_is_named(project):
    bundle = collect(project, [])
    output = "Traceback...\nModuleNotFoundError: No module named 'club.settings.production'"
    said = explain_missing_module(project, "manage.py", bundle, output)
    assert said and "is club/settings/production.py in your working tree" in said
    assert explain_missing_module(project, "manage.py", bundle, "No module named 'celery'") is None


def test_the_manage_launcher_runs_manage_py_with_the_stashed_arguments(tmp_path):
    manage = tmp_path / "manage.py"
    manage.write_text("import sys\nprint(sys.argv)\nimport helper\n")
    (tmp_path / "helper.py").write_text("print('helper from', __file__)\n")
    stashed = tmp_path / ".manage-args-x"
    stashed.write_text(json.dumps(["createsuperuser", "--password", "s3cret"]))
    env = {"ONEBOX_MANAGE_ARGS": str(stashed), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", manage_args.LAUNCHER, str(manage)],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"['{manage}', 'createsuperuser', '--password', 's3cret']" in out
    assert "helper from" in out
    assert not stashed.exists()  # read once, then gone


def test_env_references_resolve_on_the_server_and_name_a_missing_one():
    from onebox.agent import env_refs

    plain, refs = env_refs.split({"DB_PASSWORD": "${DATABASE_PASSWORD}", "TITLE": "Club"})
    assert plain == {"TITLE": "Club"} and refs == {"DB_PASSWORD": "${DATABASE_PASSWORD}"}
    url = {"DB_URL": "postgres://${DATABASE_USER}@${DATABASE_HOST}/x"}
    available = {"DATABASE_PASSWORD": "pw", "DATABASE_USER": "u", "DATABASE_HOST": "localhost"}
    assert env_refs.resolve({**refs, **url}, available) == {
        "DB_PASSWORD": "pw",
        "DB_URL": "postgres://u@localhost/x",
    }
    with pytest.raises(AgentError) as missing:
        env_refs.resolve({"KEY": "${NOPE}"}, available)
    assert (
        missing.value.message == "[env] vars KEY refers to ${NOPE}, which this server does not have"
    )


def test_a_django_that_does_not_run_on_the_servers_python_is_named():
    from onebox.errors import UnsupportedError
    from onebox.python_support import check_django_python, check_requires_python

    check_django_python("asgiref==3.8\ndjango==5.2.8 \\\n  --hash=sha256:aa\n", "3.13")
    with pytest.raises(UnsupportedError) as old:
        check_django_python("Django==4.0.10 --hash=sha256:aa\n", "3.13")
    assert old.value.message.startswith(
        "Django 4.0.10 supports Python 3.8 to 3.10; the server's Python is 3.13"
    )
    assert '[server] python = "3.10"' in old.value.hint
    check_django_python("django==9.9.1\n", "3.13")  # a release onebox does not know: let be
    with pytest.raises(UnsupportedError) as needs:
        check_requires_python(">=3.12", "3.11.2", "requires-python")
    assert needs.value.message == (
        "the project needs Python >=3.12 (requires-python); the server's Python is 3.11.2"
    )
    assert '[server] python = "3.12"' in needs.value.hint


def test_a_failed_source_build_names_the_package_and_the_missing_piece():
    from onebox.agent.venv import install_failure

    header = (
        "  \u00d7 Failed to build `pycairo==1.26.0`\n  The build backend returned an error\n"
        "      cairo/module.c:3:10: fatal error: cairo.h: No such file or directory\n"
    )
    error = install_failure(header)
    assert (
        error.message
        == "building pycairo==1.26.0 from source failed: the C header cairo.h is missing"
    )
    assert "[build] packages" in error.hint
    pkgconfig = "x Failed to build `dbus-python==1.3.2`\nPackage dbus-1 was not found in the "
    pkgconfig += "pkg-config search path.\n"
    assert install_failure(pkgconfig).message.endswith("pkg-config cannot find dbus-1")
    assert install_failure("error: no matching distribution").message == (
        "installing the dependencies failed"
    )


def test_health_paths_one_or_several():
    from onebox.config import AppConfig

    base = {"name": "a", "settings": "a.settings", "wsgi": "a.wsgi:application"}
    default = AppConfig(**base)
    assert default.health_check_path == "/.onebox/health"
    assert default.health_pages == {"paths": ["/"], "strict": False}
    several = AppConfig(**base, health_path=["/healthz/", "/", "/blog/"])
    assert several.health_check_path == "/healthz/"
    assert several.health_pages == {"paths": ["/", "/blog/"], "strict": True}
    with pytest.raises(ValueError, match="must be a URL path"):
        AppConfig(**base, health_path=["/ok", "no-slash"])


def test_bridging_links_the_kept_releases_hashed_files_and_nothing_through_links(
    tmp_path, monkeypatch
):
    from onebox.agent import static_files

    monkeypatch.setattr(static_files, "write_file", lambda p, text, **kw: p.write_text(text))

    def release(name: str, files: dict[str, str]) -> Path:
        root = tmp_path / name
        (root / ".onebox").mkdir(parents=True)
        for rel, text in files.items():
            (root / "static" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "static" / rel).write_text(text)
        (root / ".onebox" / "static").symlink_to(root / "static")
        return root

    old = release(
        "r1", {"app.0123456789ab.js": "old", "app.js": "old", "css/a.aaaaaaaaaaaa.css": "a"}
    )
    assert static_files.bridge(old, (old / "static").resolve(), []) == 0
    new = release("r2", {"app.fedcba987654.js": "new", "app.js": "new"})
    (new / "static" / "css").symlink_to(tmp_path / "elsewhere")  # planted: leads out
    (tmp_path / "elsewhere").mkdir()
    linked = static_files.bridge(new, (new / "static").resolve(), [old])
    assert linked == 1
    assert (new / "static" / "app.0123456789ab.js").read_text() == "old"  # bridged
    assert (new / "static" / "app.js").read_text() == "new"  # the newest wins
    assert not any((tmp_path / "elsewhere").iterdir())  # nothing linked through the link
    assert (new / ".onebox" / "static-own.txt").read_text() == "app.fedcba987654.js\n"


def test_probes_run_with_a_manage_py_argv_and_may_start_with_future_imports():
    from onebox.agent.django import probe_code

    source = "from __future__ import annotations\nimport sys\nprint(sys.argv)\n"
    out = subprocess.run(
        [sys.executable, "-c", probe_code("/srv/a/current/manage.py", source)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out == "['/srv/a/current/manage.py', 'check']\n"


def test_a_settings_module_left_out_by_exclude_names_the_pattern(project):
    (project / ".gitignore").write_text("")
    bundle = collect(project, ["secrets_*.py"])
    with pytest.raises(ConfigError) as refused:
        check_settings_shipped(project, "manage.py", "club.settings.production", bundle)
    assert refused.value.message.endswith(
        'would not be in the release: [build] exclude leaves it out ("secrets_*.py")'
    )


def test_mesons_missing_dependency_is_named():
    from onebox.agent.venv import install_failure

    output = (
        "error: Failed to build `dbus-python==1.3.2`\n"
        '  meson.build:107:11: ERROR: Dependency "dbus-1" not found (tried pkg-config and cmake)\n'
    )
    assert install_failure(output).message == (
        "building dbus-python==1.3.2 from source failed: pkg-config cannot find dbus-1"
    )

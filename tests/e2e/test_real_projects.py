"""Projects shaped like real public ones, deployed as their own READMEs say, with only
`onebox init`, `setup`, `deploy` and `env set` of the variables those READMEs name.

club (tests/fixtures/club): django-allauth sign-up and login, django-environ settings in
a package whose production module is git-ignored ("copy production.example.py"), a
committed `.envs/` folder, settings that read sys.argv[1], HTTPS, HSTS and cookies left
to the proxy with a deliberate HSTS choice of its own, a third-party deployment warning.

On the Debian 12 practice server test_projects.py uses too (its own domain name).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    FIXTURES,
    Response,
    Server,
    copy_project,
    edit,
    fetch,
    onebox,
    onebox_json,
    use_deploy_user,
)

pytestmark = pytest.mark.e2e

DOMAIN = "club.test"


def blog_app(server: Server, project: Path, domain: str, title: str) -> Path:
    """The blog fixture set up as an app: init, BLOG_TITLE as a plain variable, Django's
    check left out (its settings are not production-ready, on purpose), setup."""
    onebox("init", "--host", server.host, "--domain", domain, cwd=project)
    config = project / "onebox.toml"
    use_deploy_user(config)
    edit(config, 'secrets = ["BLOG_TITLE"]', "secrets = []")
    edit(config, "vars = { }", f'vars = {{ BLOG_TITLE = "{title}" }}')
    edit(config, "open_ports = []", 'open_ports = []\nskip = { django = "a test fixture" }')
    onebox("setup", cwd=project)
    return config


def git_project(source: Path, target: Path) -> Path:
    project = copy_project(source, target)
    shutil.copy(
        project / "config/settings/production.example.py",
        project / "config/settings/production.py",
    )  # as the README says; .gitignore keeps it out of git
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "club"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=project,
            check=True,
        )
    return project


class Browser:
    """curl with a cookie jar, over HTTPS to the practice server."""

    def __init__(self, server: Server, jar: Path) -> None:
        self.base = ["curl", "-sS", "--max-time", "20", "--cacert", str(server.ca)]
        self.base += ["--resolve", f"{DOMAIN}:443:{server.address}", "-b", str(jar), "-c", str(jar)]

    def get(self, path: str) -> tuple[str, str]:
        out = subprocess.run(
            [*self.base, "-D", "-", f"https://{DOMAIN}{path}"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout.decode()  # bytes: text mode would turn the \r\n between head and body
        head, _, body = out.partition("\r\n\r\n")
        return head, body

    def post_form(self, path: str, fields: dict[str, str]) -> str:
        """POST the page's form with its CSRF token; the answer's status line and Location."""
        _, page = self.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page
        data = "&".join(f"{k}={v}" for k, v in {"csrfmiddlewaretoken": token[1], **fields}.items())
        url = f"https://{DOMAIN}{path}"
        answer = ["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-e", url]
        out = subprocess.run(
            [*self.base, *answer, "--data", data, url],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout


def client_address(server: Server) -> str:
    """The address the server sees this machine connect from."""
    route = subprocess.run(
        ["ip", "route", "get", server.address], capture_output=True, text=True, check=True
    ).stdout
    return re.search(r"\bsrc (\S+)", route)[1]


def test_club_allauth_ignored_settings_and_the_proxys_share(server12, tmp_path):
    project = git_project(FIXTURES / "club", tmp_path / "club")
    init = onebox("init", "--host", server12.host, "--domain", DOMAIN, cwd=project)
    assert "config.settings.production" in init.stdout
    assert "set [server] host" not in init.stdout  # --host said it
    # README: MEMBERSHIP_API_KEY required; SENTRY_DSN, REDIS_URL, NEWSLETTER_FROM optional
    assert "secrets       MEMBERSHIP_API_KEY (" in init.stdout
    optional = re.search(r"optional\s+(.*) \(", init.stdout)[1].split(", ")
    assert {"SENTRY_DSN", "REDIS_URL", "NEWSLETTER_FROM", "DJANGO_DEBUG"} <= set(optional)
    config = project / "onebox.toml"
    assert 'secrets = ["MEMBERSHIP_API_KEY"]' in config.read_text()
    written = config.read_text()
    again = onebox("init", "--host", server12.host, cwd=project)  # an existing file: kept
    assert "kept " in again.stdout and "it has everything init detects" in again.stdout
    assert config.read_text() == written
    use_deploy_user(config)
    onebox("setup", cwd=project)
    server12.ca.write_text(onebox("ca", cwd=project).stdout)

    # the production settings are git-ignored: named, with the two fixes, before building
    ignored = onebox("deploy", cwd=project, check=False)
    assert ignored.returncode == 3, ignored.stderr
    assert (
        "config/settings/production.py, which the settings module config.settings.production "
        "needs, would not be in the release: git ignores it (.gitignore:1:"
    ) in ignored.stderr
    assert 'include = ["config/settings/production.py"]' in ignored.stderr
    edit(config, "include = []", 'include = ["config/settings/production.py"]')

    missing = onebox("deploy", cwd=project, check=False)
    assert missing.returncode == 3 and "the app needs MEMBERSHIP_API_KEY" in missing.stderr
    assert "not shipped, as secret-looking: .envs/.local/.django" in missing.stderr
    onebox("env", "set", "MEMBERSHIP_API_KEY=-", cwd=project, input="mk_live_1\n")
    deployed = onebox("deploy", cwd=project)  # settings read sys.argv[1]: they load
    assert (
        "security.W005, security.W008, security.W012, security.W016: provided by onebox's proxy"
        in deployed.stderr
    )
    assert "newsletter.W001: NEWSLETTER_FROM is not set" in deployed.stderr  # shown, not fatal
    assert "REDIS_URL" not in deployed.stderr  # optional: never asked for

    # allauth signs up and logs in: it sees the client's address (REMOTE_ADDR)
    browser = Browser(server12, tmp_path / "jar")
    head, _ = browser.get("/")
    hsts = re.search(r"(?im)^strict-transport-security: (.*?)\r?$", head)[1]
    assert hsts == "max-age=63072000; preload"  # the app's own, not Caddy's default
    signup = browser.post_form(
        "/accounts/signup/",
        {
            "email": "ada@example.com",
            "password1": "Correct-Horse-9",
            "password2": "Correct-Horse-9",
        },
    )
    assert signup == f"302 https://{DOMAIN}/whoami/", signup
    me = client_address(server12)
    assert browser.get("/whoami/")[1] == f"ada@example.com from {me}\n"
    login = Browser(server12, tmp_path / "jar2")
    answer = login.post_form(
        "/accounts/login/", {"login": "ada@example.com", "password": "Correct-Horse-9"}
    )
    assert answer == f"302 https://{DOMAIN}/whoami/", answer
    # the app leaves Secure to the proxy: every cookie arrives marked (curl's jar says so)
    jar = [line.split("\t") for line in (tmp_path / "jar2").read_text().splitlines()]
    cookies = {fields[5]: fields[3] for fields in jar if len(fields) == 7}
    assert {"csrftoken", "sessionid"} <= cookies.keys(), cookies
    assert set(cookies.values()) == {"TRUE"}, cookies
    # the access log (Caddy's) names the client too
    access = onebox("logs", "--access", "-n", "50", cwd=project).stdout
    assert re.search(rf" {re.escape(me)} POST /accounts/login/ HTTP/\S+ 302 ", access), access

    # DEBUG switched on through the project's own variable: refused, the switch named
    onebox("env", "set", "DJANGO_DEBUG=true", cwd=project)
    debug = onebox("deploy", cwd=project, check=False)
    assert debug.returncode == 3
    assert "Django's deployment check fails: security.W018; nothing was changed" in debug.stderr
    assert re.search(r"config/settings/base\.py:\d+ reads it from DJANGO_DEBUG", debug.stderr)
    assert "`onebox env unset DJANGO_DEBUG`" in debug.stderr
    onebox("env", "unset", "DJANGO_DEBUG", cwd=project)

    # manage's arguments (a password, say) reach manage.py and appear in no argv or log
    canary = "onebox-canary-" + os.urandom(8).hex()
    ran = onebox(
        "manage", "--", "shell", "-c", f"x = {canary!r}; print('ran', len(x))", cwd=project
    )
    assert f"ran {len(canary)}" in ran.stdout
    assert canary not in server12.ssh("journalctl --no-pager -o cat")
    found = server12.ssh(f"grep -rl {canary} /var/log /var/lib/onebox /run /etc || true")
    assert found.strip() == ""
    history = onebox_json("history", cwd=project)
    assert canary not in str(history)


def css_build(project: Path, colour: str) -> str:
    """What press's front-end team does: a new build into static_build/, with its hashed
    copy and manifest entry, committed. The hashed name."""
    root = project / "static_build"
    css = f"h1 {{ color: {colour}; }}\n"
    name = f"press/site.{hashlib.md5(css.encode()).hexdigest()[:12]}.css"
    for old in root.glob("press/site.*.css"):
        old.unlink()
    (root / "press/site.css").write_text(css)
    (root / name).write_text(css)
    paths = {"press/site.css": name}
    (root / "staticfiles.json").write_text(json.dumps({"paths": paths, "version": "1.1"}))
    commit(project, f"build {colour}")
    return name


def commit(project: Path, message: str) -> None:
    for args in (["add", "-A"], ["commit", "-qm", message]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=project,
            check=True,
        )


def test_press_postgresql_under_its_own_names_and_a_committed_static_build(server12, tmp_path):
    """press: manage.py sets no settings module, the settings read DB_NAME... (README),
    the static files are committed prebuilt into STATIC_ROOT with their manifest."""
    project = copy_project(FIXTURES / "press", tmp_path / "press")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    first = css_build(project, "rebeccapurple")
    init = onebox("init", "--host", server12.host, "--domain", "press.test", cwd=project)
    assert "settings      press.settings.production" in init.stdout  # of dev, production
    assert "dependencies  requirements.txt" in init.stdout  # pinned, not the unlocked Pipfile
    config = project / "onebox.toml"
    text = config.read_text()
    assert 'engine = "postgresql"' in text and "secrets = []" in text
    assert 'DB_PASSWORD = "${DATABASE_PASSWORD}"' in text  # resolved on the server
    use_deploy_user(config)
    onebox("setup", cwd=project)
    server12.ca.write_text(onebox("ca", cwd=project).stdout)
    deployed = onebox("deploy", cwd=project)
    assert "has ranges" not in deployed.stderr  # every requirement is pinned

    def get(path: str) -> Response:
        resolve = f"press.test:443:{server12.address}"
        return fetch(f"https://press.test{path}", server12.ca, resolve=resolve)

    page = get("/")
    assert page.status == 200 and "<p>on postgresql</p>" in page.body, page.body
    assert f'href="/static/{first}"' in page.body
    assert get(f"/static/{first}").status == 200 and get("/about/").status == 200
    # the password reached the app from the server's own secrets, in a root-only file
    refs = server12.ssh("stat -c '%U %a' /srv/press/current/.onebox/env-refs.env")
    assert refs.strip() == "root 600"
    assert "DB_PASSWORD" not in server12.ssh("cat /srv/press/current/.onebox/release.env")

    # a new build: the previous release's hashed file stays served after the switch
    second = css_build(project, "teal")
    onebox("deploy", cwd=project)
    assert f'href="/static/{second}"' in get("/").body
    assert get(f"/static/{first}").status == 200 and get(f"/static/{second}").status == 200

    # a home page that answers 500 never gets traffic; the deploy names the URL and why
    home = project / "pages/templates/pages/home.html"
    home.write_text(home.read_text().replace("press/site.css", "press/missing.css"))
    commit(project, "broken")
    broken = onebox("deploy", cwd=project, check=False)
    assert broken.returncode == 1
    assert "the new release answers HTTP 500 on /; the live release keeps serving" in broken.stderr
    assert "Missing staticfiles manifest entry for 'press/missing.css'" in broken.stderr
    assert f'href="/static/{second}"' in get("/").body


def test_sqlite_kept_inside_the_project_is_writable_and_kept(server12, tmp_path):
    """Settings that ignore DATABASE_URL and keep BASE_DIR / "db.sqlite3"."""
    project = copy_project(FIXTURES / "blog", tmp_path / "diary")
    settings = project / "blogsite" / "settings.py"
    text = settings.read_text()
    start = text.index('"NAME": os.environ.get("DATABASE_URL"')
    end = text.index("}}", start)
    settings.write_text(text[:start] + '"NAME": BASE_DIR / "db.sqlite3"' + text[end:])
    blog_app(server12, project, "diary.test", "Diary")
    server12.ca.write_text(onebox("ca", cwd=project).stdout)
    onebox("deploy", cwd=project)
    superuser = ["createsuperuser", "--noinput", "--username", "ada", "--email", "a@example.com"]
    onebox("manage", "--", *superuser, cwd=project)
    diary = "diary.test:443:" + server12.address
    assert "1 author" in fetch("https://diary.test/", server12.ca, resolve=diary).body
    link = server12.ssh("readlink /srv/diary/current/db.sqlite3").strip()
    assert link == "/srv/diary/shared/db/db.sqlite3"
    onebox("deploy", cwd=project)  # a new release: the same data
    assert "1 author" in fetch("https://diary.test/", server12.ca, resolve=diary).body


def test_a_python_the_project_cannot_run_on_is_refused_before_building(server12, tmp_path):
    """Django 3.2 (Pythons 3.6 to 3.10) against Debian 12's 3.11: named, nothing built;
    then [server] python = "3.10", whose download cannot happen here: a clear error."""
    project = copy_project(FIXTURES / "blog", tmp_path / "legacy")
    (project / "requirements" / "base.txt").write_text("Django==3.2.25\n")
    onebox("init", "--host", server12.host, "--domain", "legacy.test", cwd=project)
    config = project / "onebox.toml"
    use_deploy_user(config)
    refused = onebox("deploy", cwd=project, check=False)
    assert refused.returncode == 6, refused.stderr
    assert "Django 3.2.25 supports Python 3.6 to 3.10; the server's Python is 3.11" in (
        refused.stderr
    )
    assert '[server] python = "3.10"' in refused.stderr
    assert server12.ssh("test -e /srv/legacy && echo yes || echo no").strip() == "no"

    # uv-managed Python: from a mirror that does not answer (these machines reach no
    # Python downloads), the failure names the cause and the way out
    edit(config, "[server]\n", '[server]\npython = "3.10"\npython_mirror = "http://127.0.0.1:9"\n')
    edit(config, 'secrets = ["BLOG_TITLE"]', "secrets = []")
    onebox("setup", cwd=project)
    failed = onebox("deploy", cwd=project, check=False)
    assert failed.returncode == 1, failed.stderr
    assert "installing Python 3.10 (uv-managed, for [server] python) failed" in failed.stderr
    assert "[server] python_mirror" in failed.stderr


def test_a_dependency_without_a_wheel_is_built_on_the_server(server12, tmp_path):
    """netifaces 0.11.0 ships only its source (a C extension): the server gets a
    compiler and Python's headers for the build, and the app imports it. The onebox.toml
    is hand-written, with only what cannot be detected ([app] and [build] are not in it).
    Then dbus-python, whose build needs a library the server lacks: named, site kept."""
    project = copy_project(FIXTURES / "blog", tmp_path / "sensors")
    base = project / "requirements" / "base.txt"
    base.write_text(base.read_text() + "netifaces==0.11.0\n")
    config = project / "onebox.toml"
    config.write_text(
        f'[server]\nhost = "{server12.host}"\nuser = "onebox"\ndomain = "sensors.test"\n'
        '[env]\nvars = { BLOG_TITLE = "Sensors" }\n'
        '[security]\nskip = { django = "a test fixture" }\n'
    )
    onebox("setup", cwd=project)
    onebox("deploy", cwd=project)
    assert server12.ssh("test -d /srv/sensors/current && echo yes").strip() == "yes"
    probe = "import netifaces; print('interfaces:', 'lo' in netifaces.interfaces())"
    assert "interfaces: True" in onebox("manage", "--", "shell", "-c", probe, cwd=project).stdout
    compiler = server12.ssh("stat -c '%U %a' $(readlink -f /usr/bin/gcc)").strip()
    assert compiler == "root 750"  # there for root's builds, not for the apps

    live = onebox_json("status", cwd=project)["result"]["release"]["release_id"]
    base.write_text(base.read_text() + "dbus-python==1.3.2\n")
    failed = onebox("deploy", cwd=project, check=False)
    assert failed.returncode == 1, failed.stderr
    assert (
        "building dbus-python==1.3.2 from source failed: pkg-config cannot find dbus-1"
        in failed.stderr
    )
    assert "[build] packages" in failed.stderr
    assert onebox_json("status", cwd=project)["result"]["release"]["release_id"] == live

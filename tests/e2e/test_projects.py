"""Django projects written elsewhere, shaped unlike examples/mvp, deployed with only
`onebox init`, edits to onebox.toml, `onebox env set`, `onebox setup` and `onebox deploy`.

Both share one Debian 12 practice server with their own domain names (Caddy's internal
CA), which also proves several apps can live on one server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import (
    FIXTURES,
    ROOT,
    Server,
    copy_project,
    edit,
    fetch,
    onebox,
    onebox_json,
    use_deploy_user,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ca(server12: Server, tmp_path_factory) -> Path:
    return server12.ca


def skip_django_check(config: Path) -> None:
    """The fixtures' settings are not production-ready (on purpose: see the blog test)."""
    edit(config, "open_ports = []", 'open_ports = []\nskip = { django = "a test fixture" }')


def get(server: Server, domain: str, path: str = "/"):
    return fetch(f"https://{domain}{path}", server.ca, resolve=f"{domain}:443:{server.address}")


def test_shop_pyproject_split_settings_env_and_build_step(server12, tmp_path):
    project = copy_project(FIXTURES / "shop", tmp_path / "shop")
    init = onebox("init", "--host", server12.host, "--domain", "shop.test", cwd=project)
    use_deploy_user(project / "onebox.toml")
    skip_django_check(project / "onebox.toml")
    assert "config.settings.production" in init.stdout
    config = project / "onebox.toml"
    text = config.read_text()
    assert 'manage = "src/manage.py"' in text and 'requirements = "pyproject.toml"' in text
    assert 'secrets = ["SHOP_API_TOKEN"]' in text
    edit(config, "build = []", 'build = ["python assets/build.py"]')
    edit(config, '# health_path = "/healthz/"', 'health_path = "/ping"')

    onebox("setup", cwd=project)
    server12.ca.write_text(onebox("ca", cwd=project).stdout)

    missing = onebox("deploy", cwd=project, check=False)
    assert missing.returncode == 3
    assert "the app needs SHOP_API_TOKEN" in missing.stderr
    assert "onebox env set SHOP_API_TOKEN=..." in missing.stderr

    onebox("env", "set", "SHOP_API_TOKEN=-", cwd=project, input="sk_live_4242\n")
    result = onebox_json("deploy", cwd=project)["result"]
    assert result["url"] == "https://shop.test/"
    page = get(server12, "shop.test")
    assert page.status == 200 and "<h1>Shop catalogue</h1>" in page.body
    assert "token sk…" in page.body
    css = re.search(r'href="(/static/catalog/generated\.[0-9a-f]{12}\.css)"', page.body).group(1)
    assert "color: teal" in get(server12, "shop.test", css).body
    assert "sk_live_4242" not in server12.ssh("ps -eo args")

    seeded = onebox("manage", "--", "seed_media", cwd=project)
    assert "saved hello.txt" in seeded.stdout
    media = get(server12, "shop.test", "/uploads/hello.txt")
    assert media.status == 200 and media.body == "hello from media\n"
    assert server12.ssh("cat /srv/shop/shared/media/hello.txt") == "hello from media\n"

    # a failing build command: clear error, the live release keeps serving
    edit(
        config, 'build = ["python assets/build.py"]', 'build = ["python assets/build.py", "exit 3"]'
    )
    failed = onebox("deploy", cwd=project, check=False)
    assert failed.returncode == 1 and "build command `exit 3` failed" in failed.stderr
    assert get(server12, "shop.test").status == 200
    status = onebox_json("status", cwd=project)["result"]
    assert status["release"]["release_id"] == result["release"]


def test_blog_requirements_with_index_url_and_env_vars(server12, tmp_path):
    project = copy_project(FIXTURES / "blog", tmp_path / "blog")
    init = onebox("init", "--host", server12.host, "--domain", "blog.test", cwd=project)
    assert "optional      DJANGO_DEBUG" in init.stdout  # read with a default: not required
    use_deploy_user(project / "onebox.toml")
    config = project / "onebox.toml"
    text = config.read_text()
    assert 'requirements = "requirements/production.txt"' in text
    assert 'secrets = ["BLOG_TITLE"]' in text
    # BLOG_TITLE is no secret: the user moves it to [env] vars.
    edit(config, 'secrets = ["BLOG_TITLE"]', "secrets = []")
    edit(config, "vars = { }", 'vars = { BLOG_TITLE = "Field notes" }')
    edit(config, '# health_path = "/healthz/"', 'health_path = "/healthz"')

    # a typo in the config: named, with the line and a suggestion
    edit(config, 'health_path = "/healthz"', 'helth_path = "/healthz"')
    typo = onebox("setup", cwd=project, check=False)
    assert typo.returncode == 3
    assert re.search(
        r"onebox\.toml:\d+: unknown key 'app\.helth_path' \(did you mean "
        r"'health_path'\?\)",
        typo.stderr,
    )
    edit(config, 'helth_path = "/healthz"', 'health_path = "/healthz"')

    onebox("setup", cwd=project)
    server12.ca.write_text(onebox("ca", cwd=project).stdout)
    # its settings are not ready for production (init said so): Django's check --deploy
    refused = onebox("deploy", cwd=project, check=False)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    # no MIDDLEWARE at all: the proxy cannot stand in for those (it does for HSTS & co.)
    assert "Django's deployment check fails: security.W001, security.W002" in refused.stderr
    assert 'add "django.middleware.security.SecurityMiddleware" to MIDDLEWARE' in refused.stderr
    assert "security.W004" not in refused.stderr
    assert 'skip = { django = "the reason" }' in refused.stderr
    assert onebox_json("status", cwd=project)["result"]["releases"] == []
    skip_django_check(config)
    onebox("deploy", cwd=project)
    page = get(server12, "blog.test")
    assert page.status == 200 and "<h1>Field notes</h1>" in page.body
    css = re.search(r'href="(/assets/posts/blog\.[0-9a-f]{12}\.css)"', page.body).group(1)
    response = get(server12, "blog.test", css)
    assert response.status == 200 and "immutable" in response.headers["cache-control"]

    # A release that moves its static URL, then fails its health check: nothing the live
    # release uses changes, the Caddy site included.
    site = server12.ssh("cat /etc/caddy/sites/blog.caddy")
    edit(project / "blogsite" / "settings.py", 'STATIC_URL = "/assets/"', 'STATIC_URL = "/s2/"')
    edit(config, 'health_path = "/healthz"', 'health_path = "/no-such-page"')
    failed = onebox("deploy", cwd=project, check=False)
    assert failed.returncode == 1
    assert "failed its health check on /no-such-page (HTTP 404)" in failed.stderr
    assert server12.ssh("cat /etc/caddy/sites/blog.caddy") == site
    assert get(server12, "blog.test", css).status == 200
    assert get(server12, "blog.test").status == 200


def test_unreachable_host_is_a_clear_error(tmp_path):
    project = copy_project(FIXTURES / "blog", tmp_path / "blog")
    onebox("init", "--host", "root@127.0.0.1:1", cwd=project)
    result = onebox("status", cwd=project, check=False)
    assert result.returncode == 4
    assert "cannot connect to root@127.0.0.1:1" in result.stderr
    assert "nothing listens for SSH there" in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_django_project(tmp_path):
    result = onebox("init", str(tmp_path), check=False)
    assert result.returncode == 3 and "no manage.py found" in result.stderr


def test_non_debian_server_is_refused(server12, tmp_path):
    project = copy_project(FIXTURES / "blog", tmp_path / "blog")
    onebox("init", "--host", server12.host, cwd=project)
    use_deploy_user(project / "onebox.toml")
    server12.ssh(
        "cp --remove-destination /usr/lib/os-release /etc/os-release && "
        "sed -i 's/^ID=.*/ID=ubuntu/; s/^PRETTY_NAME=.*/PRETTY_NAME=\"Ubuntu 24.04\"/' "
        "/etc/os-release"
    )
    try:
        result = onebox("setup", cwd=project, check=False)
    finally:
        server12.ssh("ln -sf ../usr/lib/os-release /etc/os-release")
    assert result.returncode == 6
    assert "this server runs Ubuntu 24.04; onebox supports Debian 12 and 13" in result.stderr


def test_users_own_ssh_config_and_first_contact(server12, tmp_path):
    """A server reached through the user's ~/.ssh/config: its key is recorded on first
    contact (and shown), trusted afterwards, and refused once it changes."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = Path(f"/var/lib/onebox/sandboxes/{server12.name}/id_ed25519")
    known = home / ".ssh" / "known_hosts"
    # root, unless an earlier test's setup has hardened the server: then its deploy user
    hardened = server12.ssh("id -u onebox >/dev/null 2>&1 && echo yes || true").strip()
    user = "onebox" if hardened == "yes" else "root"
    (home / ".ssh" / "config").write_text(
        f"Host office-box\n  HostName {server12.address}\n  User {user}\n  IdentityFile {key}\n"
        f"  UserKnownHostsFile {known}\n"
    )
    env = {"HOME": str(home), "ONEBOX_SSH_CONFIG": str(home / ".ssh" / "config")}
    project = copy_project(FIXTURES / "blog", tmp_path / "blog")
    onebox("init", "--host", "office-box", cwd=project, env=env)

    first = onebox("status", cwd=project, env=env)
    assert "first contact with office-box: recorded its host key SHA256:" in first.stderr
    assert server12.address in known.read_text()
    second = onebox("status", cwd=project, env=env)
    assert "first contact" not in second.stderr

    fake = tmp_path / "fake"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    kind, value = fake.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"{server12.address} {kind} {value}\n")
    changed = onebox("status", cwd=project, env=env, check=False)
    assert changed.returncode == 5
    assert "host key of office-box changed" in changed.stderr
    assert f"ssh-keygen -R {server12.address}" in changed.stderr


def pipfile_lock_for(requirements: str, tmp: Path) -> dict:
    """A Pipfile.lock as pipenv writes it, for the given requirements (via uv's resolver)."""
    import subprocess

    from uv import find_uv_bin

    source = tmp / "in.txt"
    source.write_text(requirements)
    out = subprocess.run(
        [
            find_uv_bin(),
            "pip",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--no-header",
            "--python-version",
            "3.11",
            str(source),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    default = {}
    for block in out.replace("\\\n", " ").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)((?:\s+--hash=\S+)+)", block.strip())
        if match:
            hashes = re.findall(r"--hash=(\S+)", match.group(3))
            default[match.group(1).lower()] = {"version": f"=={match.group(2)}", "hashes": hashes}
    return {
        "_meta": {
            "sources": [{"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": True}]
        },
        "default": default,
        "develop": {},
    }


def test_pipenv_project_deployed_by_a_sudo_user(server12, tmp_path):
    """A Pipfile.lock project, deployed by a non-root user with passwordless sudo."""
    import json
    import shutil

    project = copy_project(FIXTURES / "blog", tmp_path / "notes")
    shutil.rmtree(project / "requirements")
    (project / "Pipfile").write_text('[packages]\ndjango = ">=5.2,<5.3"\n')
    lock = pipfile_lock_for("Django>=5.2,<5.3\n", tmp_path)
    (project / "Pipfile.lock").write_text(json.dumps(lock))

    server12.ssh(
        "id ada >/dev/null 2>&1 || useradd --create-home --shell /bin/bash ada; "
        "mkdir -p ~ada/.ssh && cp /root/.ssh/authorized_keys ~ada/.ssh/ && "
        "chown -R ada: ~ada/.ssh && echo 'ada ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ada"
    )
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    box = Path(f"/var/lib/onebox/sandboxes/{server12.name}")
    (home / ".ssh" / "config").write_text(
        f"Host notes-server\n  HostName {server12.address}\n  User ada\n"
        f"  IdentityFile {box}/id_ed25519\n  UserKnownHostsFile {box}/known_hosts\n"
    )
    env = {"ONEBOX_SSH_CONFIG": str(home / ".ssh" / "config")}
    onebox("init", "--host", "notes-server", "--domain", "notes.test", cwd=project, env=env)
    config = project / "onebox.toml"
    assert 'requirements = "Pipfile.lock"' in config.read_text()
    edit(config, "vars = { }", 'vars = { BLOG_TITLE = "Notes via Pipenv" }')
    edit(config, 'secrets = ["BLOG_TITLE"]', "secrets = []")
    skip_django_check(config)
    # as ada, the ssh config's user (not the deploy user init suggests): a sudo user's setup
    edit(config, 'user = "onebox"\n', "")

    onebox("setup", cwd=project, env=env)
    onebox("deploy", cwd=project, env=env)
    assert server12.ssh("stat -c %U /srv/notes/current/manage.py").strip() == "root"
    page = get(server12, "notes.test")
    assert page.status == 200 and "<h1>Notes via Pipenv</h1>" in page.body
    # no health_path in onebox.toml: onebox's own check, which Django and the database answer
    health = get(server12, "notes.test", "/.onebox/health")
    assert (health.status, health.body) == (200, "ok\n")

    # a key the server does not accept
    other = tmp_path / "other_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config_file = home / ".ssh" / "config"
    config_file.write_text(config_file.read_text().replace(f"{box}/id_ed25519", str(other)))
    refused = onebox("status", cwd=project, env=env, check=False)
    assert refused.returncode == 4
    # setup hardened SSH: onebox now logs in as the deploy user (written to onebox.toml)
    assert 'user = "onebox"' in config.read_text()
    assert "the server refused your key for user 'onebox'" in refused.stderr


def test_ssh_left_alone_and_a_sudo_user_still_gets_every_command(server12, tmp_path):
    """[security] skip ssh: no deploy user, the login is a sudo user of the company's own;
    the fixed commands (ca, manage, logs) go through the agent's entry all the same."""
    server12.ssh(
        "id grace >/dev/null 2>&1 || useradd --create-home --shell /bin/bash grace; "
        "mkdir -p ~grace/.ssh && cp /root/.ssh/authorized_keys ~grace/.ssh/ && "
        "chown -R grace: ~grace/.ssh && echo 'grace ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/grace"
    )
    project = copy_project(ROOT / "examples" / "mvp", tmp_path / "plain")
    config = project / "onebox.toml"
    edit(config, 'name = "mvp"', 'name = "plain"')
    edit(config, 'host = "sandbox:demo"', f'host = "{server12.host}"')
    edit(config, 'user = "onebox"', 'user = "grace"')
    edit(config, 'domain = ""', 'domain = "plain.test"')
    config.write_text(
        config.read_text() + '\n[security]\nskip = { ssh = "the company manages sshd" }\n'
    )
    setup = onebox("setup", cwd=project)
    assert "ssh left alone: the company manages sshd" in setup.stderr
    onebox("deploy", cwd=project)
    ca = onebox("ca", cwd=project).stdout
    assert "BEGIN CERTIFICATE" in ca
    server12.ca.write_text(ca)  # Caddy's one CA on this server, whichever app asks
    checked = onebox("manage", "--", "check", cwd=project)
    assert "System check identified no issues" in checked.stdout
    assert onebox("logs", "-n", "5", cwd=project).returncode == 0
    assert get(server12, "plain.test").status == 200


def test_undeclared_missing_variable_gets_a_hint(server12, tmp_path):
    """Settings that crash on a variable nobody declared: the step's output and the fix."""
    project = copy_project(FIXTURES / "shop", tmp_path / "shop2")
    onebox("init", "--host", server12.host, "--domain", "shop2.test", cwd=project)
    use_deploy_user(project / "onebox.toml")
    config = project / "onebox.toml"
    edit(config, 'secrets = ["SHOP_API_TOKEN"]', "secrets = []")
    edit(config, "build = []", 'build = ["python assets/build.py"]')
    onebox("setup", cwd=project)
    failed = onebox("deploy", cwd=project, check=False)
    assert failed.returncode == 1
    assert "loading the Django settings failed" in failed.stderr  # before anything is built
    assert "KeyError: 'SHOP_API_TOKEN'" in failed.stderr
    assert "run `onebox env set SHOP_API_TOKEN=...` and deploy again" in failed.stderr
    assert onebox_json("status", cwd=project)["result"]["releases"] == []


def test_loose_requirements_take_the_versions_the_developer_tested(server12, tmp_path):
    """requirements.txt says Django>=5.2,<5.3; the project's .venv has 5.2.1: the server
    must run 5.2.1, not the newest 5.2.x."""
    import subprocess

    from uv import find_uv_bin

    project = copy_project(FIXTURES / "blog", tmp_path / "tested")
    uv = find_uv_bin()
    subprocess.run([uv, "venv", "--quiet", str(project / ".venv")], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(project / ".venv" / "bin" / "python"),
            "Django==5.2.1",
        ],
        check=True,
    )
    onebox("init", "--host", server12.host, "--domain", "tested.test", cwd=project)
    use_deploy_user(project / "onebox.toml")
    skip_django_check(project / "onebox.toml")
    config = project / "onebox.toml"
    edit(config, "vars = { }", 'vars = { BLOG_TITLE = "Tested" }')
    edit(config, 'secrets = ["BLOG_TITLE"]', "secrets = []")
    onebox("setup", cwd=project)
    deployed = onebox("deploy", cwd=project)
    assert "locked to the versions in" in deployed.stderr
    server12.ca.write_text(onebox("ca", cwd=project).stdout)  # (also when run on its own)
    version = server12.ssh(
        "/srv/tested/current/.venv/bin/python -c 'import django; print(django.__version__)'"
    )
    assert version.strip() == "5.2.1"
    assert get(server12, "tested.test").status == 200

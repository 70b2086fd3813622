"""Releases under load: deploys and rollbacks drop no request; a release that cannot start
never receives traffic; a rollback past a migration is refused until forced.

examples/mvp on the shared Debian 12 server (its own domain). A bounded load generator
(tests/e2e/load.py) sends GETs and POSTs, on kept-alive and on new connections, through
Caddy for the whole of each operation, and every failed request fails the test.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from onebox.agent.deploy import STEPS
from onebox.agent.steps import Step

from .conftest import ROOT, Server, copy_project, fetch, onebox, onebox_background, onebox_json
from .load import Load

pytestmark = pytest.mark.e2e

DOMAIN = "rel.test"


@pytest.fixture(scope="module")
def project(server12: Server, tmp_path_factory) -> Path:
    project = copy_project(ROOT / "examples" / "mvp", tmp_path_factory.mktemp("rel") / "rel")
    config = project / "onebox.toml"
    text = config.read_text().replace('name = "mvp"', 'name = "rel"')
    text = text.replace('host = "sandbox:demo"', f'host = "{server12.host}"')
    config.write_text(text.replace('domain = ""', f'domain = "{DOMAIN}"'))
    onebox("setup", cwd=project)
    onebox("deploy", cwd=project)
    server12.ca.write_text(onebox("ca", cwd=project).stdout)
    return project


def load(server: Server) -> Load:
    return Load(server.address, DOMAIN, server.ca)


def page(server: Server) -> str:
    return fetch(f"https://{DOMAIN}/", server.ca, resolve=f"{DOMAIN}:443:{server.address}").body


def change_code(project: Path, marker: str) -> None:
    template = project / "guestbook" / "templates" / "guestbook" / "index.html"
    text = template.read_text()
    start = text.index('<p class="tagline">')
    end = text.index("</p>", start) + len("</p>")
    template.write_text(text[:start] + f'<p class="tagline">{marker}</p>' + text[end:])


def assert_clean(traffic: Load) -> None:
    assert traffic.failures == [], traffic.failures[:10]
    assert len(traffic.ok) == 4 and min(traffic.ok.values()) >= 20, traffic.ok


def test_deploy_under_load_drops_nothing(server12: Server, project: Path):
    change_code(project, "version two")
    with load(server12) as traffic:
        onebox("deploy", cwd=project)
    assert_clean(traffic)
    assert "version two" in page(server12)


def test_rollback_under_load_drops_nothing_and_goes_back(server12: Server, project: Path):
    listed = onebox_json("releases", cwd=project)["result"]["releases"]
    assert len(listed) >= 2 and listed[-1]["live"] and not listed[-2]["live"]
    previous, newest = listed[-2]["release_id"], listed[-1]["release_id"]
    with load(server12) as traffic:
        result = onebox_json("rollback", cwd=project)["result"]
    assert_clean(traffic)
    assert (result["release"], result["previous"]) == (previous, newest)
    assert "version two" not in page(server12)
    text = onebox("releases", cwd=project).stdout
    assert f"* {previous}" in text
    with load(server12) as traffic:
        onebox("rollback", newest, cwd=project)  # forward again, by name
    assert_clean(traffic)
    assert "version two" in page(server12)


def test_rollback_to_the_standby_is_a_switch_under_load(server12: Server, project: Path):
    """After a deploy the previous release stays up (the practice server has the memory):
    rolling back to it starts nothing, drops nothing, and takes the server well under
    half a second; the release rolled back from stops, after the answer."""
    change_code(project, "version three")
    done = onebox("deploy", cwd=project)
    deployed = done.stdout + done.stderr  # (the steps are on stderr)
    assert "keep the standby" in deployed and "stays up as the standby" in deployed, deployed
    status = onebox_json("status", cwd=project)["result"]
    standby = status["standby"]
    assert standby["release"] and standby["memory_mib"] > 0, standby
    assert status["serving"]["worker_class"] == "gthread" and status["serving"]["threads"] == 4
    with load(server12) as traffic:
        result = onebox_json("rollback", cwd=project)["result"]
    assert_clean(traffic)
    assert result["standby"] and result["release"] == standby["release"], result
    assert result["seconds"] < 0.5, result  # (measured: 0.04 s)
    assert "version three" not in page(server12)
    deadline = time.monotonic() + 60  # the newer slot stops once its connections are gone
    while slot_states(project).count("active") > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert slot_states(project).count("active") == 1
    after = onebox("status", cwd=project).stdout
    assert "standby  none: the rollback stopped release" in after, after


def slot_states(project: Path) -> list[str]:
    units = onebox_json("status", cwd=project)["result"]["units"]
    return sorted(units.values())


def test_without_a_standby_the_old_release_stops_and_status_says_why(
    server12: Server, project: Path
):
    config = project / "onebox.toml"
    original = config.read_text()
    config.write_text(original.replace("[deploy]\n", "[deploy]\nstandby = false\n", 1))
    try:
        change_code(project, "no standby")
        done = onebox("deploy", cwd=project)
        deployed = done.stdout + done.stderr
        assert "no standby: [deploy] standby = false" in deployed, deployed
        status = onebox("status", cwd=project).stdout
        assert "standby  none: [deploy] standby = false" in status, status
        with load(server12) as traffic:
            result = onebox_json("rollback", cwd=project)["result"]
        assert_clean(traffic)
        # (unloaded it takes about 1 s, bench/releases.py; here under load, on a shared box)
        assert not result["standby"] and result["seconds"] < 5, result
    finally:
        config.write_text(original)


def test_unknown_or_live_release_is_refused(project: Path):
    unknown = onebox("rollback", "19990101-000000-000", cwd=project, check=False)
    assert unknown.returncode == 3 and "no release '19990101-000000-000'" in unknown.stderr
    live = onebox_json("releases", cwd=project)["result"]["live"]
    same = onebox("rollback", live, cwd=project, check=False)
    assert same.returncode == 3 and "already live" in same.stderr


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("import", "the new release"),
        ("health", "failed its health check"),
    ],
)
def test_broken_release_under_load_never_gets_traffic(
    server12: Server, project: Path, breakage: str, message: str
):
    settings = project / "mvp" / "settings.py"
    views = project / "guestbook" / "views.py"
    original = {path: path.read_text() for path in (settings, views)}
    live = onebox_json("releases", cwd=project)["result"]["live"]
    if breakage == "import":  # the WSGI app cannot even be imported in the new slot
        (project / "mvp" / "wsgi.py").write_text(
            (project / "mvp" / "wsgi.py").read_text() + "\nimport module_that_is_not_there\n"
        )
    else:  # it starts, but its health view fails
        views.write_text(
            original[views].replace(
                "    with connection.cursor() as cursor:",
                '    raise RuntimeError("unhealthy")\n    with connection.cursor() as cursor:',
            )
        )
    try:
        with load(server12) as traffic:
            failed = onebox("deploy", cwd=project, check=False)
    finally:
        for path, text in original.items():
            path.write_text(text)
        wsgi = project / "mvp" / "wsgi.py"
        wsgi.write_text(wsgi.read_text().replace("\nimport module_that_is_not_there\n", ""))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert message in failed.stderr
    assert_clean(traffic)
    assert onebox_json("releases", cwd=project)["result"]["live"] == live


CRASH_AFTER_FIRST_POST = """

_app = application


def application(environ, start_response):  # the master dies right after the first POST
    if environ["REQUEST_METHOD"] == "POST":
        import signal
        import threading

        threading.Timer(0.2, os.kill, (os.getppid(), signal.SIGKILL)).start()
    return _app(environ, start_response)
"""


def test_release_crashing_right_after_the_switch_hands_traffic_back(
    server12: Server, project: Path
):
    """It passes its health check, takes traffic, then dies: the old release, still
    running during the probation, gets the traffic back, and the deploy fails."""
    wsgi = project / "mvp" / "wsgi.py"
    original = wsgi.read_text()
    live = onebox_json("releases", cwd=project)["result"]["live"]
    wsgi.write_text(original + CRASH_AFTER_FIRST_POST)
    change_code(project, "crashes after the switch")
    try:
        with load(server12) as traffic:
            failed = onebox("deploy", cwd=project, check=False)
    finally:
        wsgi.write_text(original)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "crashed right after the switch; traffic is back on release " + live in failed.stderr
    assert onebox_json("releases", cwd=project)["result"]["live"] == live
    assert "crashes after the switch" not in page(server12)
    assert fetch_status(server12) == 200
    # Requests in flight on the dying release may fail; every other one is answered.
    print(f"during the crash and the hand-back: {traffic.ok}, failures {traffic.failures}")
    assert len(traffic.failures) <= 10, traffic.failures
    assert min(traffic.ok.values()) >= 20, traffic.ok


def test_rollback_past_a_migration_is_refused_until_forced(server12: Server, project: Path):
    migration = project / "guestbook" / "migrations" / "0099_note.py"
    migration.write_text(
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('guestbook', '0001_initial')]\n"
        "    operations = [\n"
        "        migrations.CreateModel('Note', [\n"
        "            ('id', models.BigAutoField(primary_key=True)),\n"
        "            ('text', models.TextField()),\n"
        "        ]),\n"
        "    ]\n"
    )
    (project / "guestbook" / "models.py").write_text(
        (project / "guestbook" / "models.py").read_text()
        + "\n\nclass Note(models.Model):\n    text = models.TextField()\n"
    )
    onebox("deploy", cwd=project)
    refused = onebox("rollback", cwd=project, check=False)
    assert refused.returncode == 3
    assert "guestbook.0099_note" in refused.stderr and "--force" in refused.stderr
    forced = onebox_json("rollback", "--force", cwd=project)["result"]
    assert forced["newer"] == ["guestbook.0099_note"]
    assert "Guestbook" in page(server12)


def test_breaking_migration_is_refused_unless_allowed(server12: Server, project: Path):
    """A NOT NULL column without a database default would fail the serving code's
    inserts: refused, with the expand/contract way; --allow-breaking runs it behind the
    maintenance page, which is down again once the new release serves."""
    add_migration(
        project,
        "rating",
        "migrations.AddField('entry', 'rating', models.IntegerField(default=0))",
        "rating = models.IntegerField(default=0)",
    )
    live = onebox_json("releases", cwd=project)["result"]["live"]
    refused = onebox("deploy", cwd=project, check=False)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "would break the release still serving" in refused.stderr
    assert "adds a NOT NULL column to guestbook_entry" in refused.stderr
    assert "--allow-breaking" in refused.stderr and "null=True" in refused.stderr
    assert onebox_json("releases", cwd=project)["result"]["live"] == live
    assert "rating" not in columns(server12)
    assert fetch_status(server12) == 200

    statuses: list[int] = []
    deploying = onebox_background("deploy", "--allow-breaking", cwd=project)
    deadline = time.monotonic() + 300
    while deploying.poll() is None and time.monotonic() < deadline:
        statuses.append(fetch_status(server12))
        time.sleep(0.1)
    output, _ = deploying.communicate(timeout=300)
    assert deploying.returncode == 0, output
    assert "maintenance page is up" in output
    assert set(statuses) <= {200, 503} and 503 in statuses, statuses
    assert fetch_status(server12) == 200
    assert "rating" in columns(server12)
    assert "[X] 0100_rating" in onebox("manage", "showmigrations", "guestbook", cwd=project).stdout


def test_rollback_with_restore_db_undoes_the_newer_migrations(server12: Server, project: Path):
    """The deploy that applied a migration took a backup first; `rollback --restore-db`
    loads it (behind the maintenance page) and switches to the older release."""
    add_migration(
        project,
        "mood",
        "migrations.AddField('entry', 'mood', models.CharField(max_length=20, null=True))",
        "mood = models.CharField(max_length=20, null=True)",
    )
    before = onebox_json("releases", cwd=project)["result"]["live"]
    deployed = onebox_json("deploy", cwd=project)["result"]
    assert deployed["migrations"]["applied"] == ["guestbook.0101_mood"]
    backup = deployed["migrations"]["backup"]
    assert backup and "mood" in columns(server12)

    refused = onebox("rollback", cwd=project, check=False)
    assert refused.returncode == 3
    assert f"--restore-db` puts the database back as backup {backup}" in refused.stderr

    result = onebox_json("rollback", "--restore-db", cwd=project)["result"]
    assert (result["release"], result["previous"]) == (before, deployed["release"])
    assert result["restored"]["restored"] == backup and result["restored"]["safety_backup"]
    assert "mood" not in columns(server12) and "rating" in columns(server12)
    assert onebox_json("releases", cwd=project)["result"]["live"] == before
    assert fetch_status(server12) == 200
    assert "0101_mood" not in onebox("manage", "showmigrations", "guestbook", cwd=project).stdout

    onebox("deploy", cwd=project)  # and forward again: the migration is applied anew
    assert "mood" in columns(server12)


def columns(server: Server) -> str:
    database = "/srv/rel/shared/db/db.sqlite3"
    return server.ssh(
        f"sqlite3 {database} 'select name from pragma_table_info(\"guestbook_entry\")'"
    )


# The deploy's own list of steps (onebox.agent.deploy.STEPS), less those this project
# never reaches (no Redis, no media bucket, Caddy already running) and those that report
# no step.
NOT_REACHED = {"redis", "media storage", "start the proxy (it was not running)"}
# Steps shown under another name when they run ("stop old release" keeps the standby).
SHOWN = {"stop old release": "(stop old release|keep the standby)"}
DEPLOY_STEPS = [
    entry.name
    for entry in STEPS
    if isinstance(entry, Step) and not entry.quiet and entry.name not in NOT_REACHED
]


def add_migration(project: Path, name: str, operation: str, field: str = "") -> None:
    """A migration `NNNN_name` after the latest one, with one operation; `field`, when
    given, is the model line that matches it, added to Entry."""
    migrations = project / "guestbook" / "migrations"
    latest = max(p.stem for p in migrations.glob("0*.py"))
    number = int(latest[:4]) + 1
    (migrations / f"{number:04d}_{name}.py").write_text(
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [('guestbook', '{latest}')]\n"
        f"    operations = [{operation}]\n"
    )
    if field:
        models = project / "guestbook" / "models.py"
        anchor = "    created = models.DateTimeField(auto_now_add=True)\n"
        models.write_text(models.read_text().replace(anchor, anchor + f"    {field}\n"))


def add_table(project: Path, model: str) -> None:
    """A compatible migration (a new table), after the latest one."""
    operation = (
        f"migrations.CreateModel('{model}', [('id', models.BigAutoField(primary_key=True))])"
    )
    add_migration(project, model.lower(), operation)


def wait_until_idle(
    server: Server, app: str = "rel", limit: float = 120, appear_within: float = 0
) -> None:
    """The detached run of a killed client finishes on its own. `appear_within`: a client
    killed while it streamed may have sent it all: its run may still be about to start."""
    started = time.monotonic()
    while time.monotonic() - started < appear_within and not deploying(server, app):
        time.sleep(0.2)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        units = deploying(server, app)
        if not units:
            return
        time.sleep(0.5)
    raise AssertionError(f"the detached deploy still runs after {limit}s: {units}")


def deploying(server: Server, app: str) -> str:
    """The detached deploys of `app` running now (systemd's transient units)."""
    return server.ssh(
        f"systemctl list-units --no-legend --plain 'onebox-{app}-deploy-*' "
        "--state=active,activating,deactivating"
    ).strip()


@pytest.mark.parametrize("after", ["launch", *DEPLOY_STEPS])
def test_killed_client_leaves_the_site_serving(server12: Server, project: Path, after: str):
    """SIGKILL of the client right after each step of a deploy (and right after it
    started): the site keeps answering, the server finishes the deploy on its own, the
    next deploy succeeds. Each deploy brings a migration, so that the migration steps
    (check, backup, migrate) are among those killed after."""
    before = onebox_json("releases", cwd=project)["result"]["live"]
    change_code(project, f"killed after {after}")
    add_table(project, "Killed" + re.sub(r"\W", "", after.title()))
    process = onebox_background("deploy", cwd=project)
    seen = []
    reached = after == "launch"
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    if after == "launch":  # while it connects and streams the release to the server
        time.sleep(1.5)
    while not reached and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
        reached = bool(re.search(rf"[✓·] {SHOWN.get(after, re.escape(after))}\b", line))
    process.kill()  # SIGKILL: no handler runs, the SSH session just vanishes
    process.wait()
    assert reached, f"the deploy never reported {after!r}: {seen}"
    assert fetch_status(server12) == 200
    wait_until_idle(server12, appear_within=5 if after == "launch" else 0)
    assert fetch_status(server12) == 200
    live = onebox_json("releases", cwd=project)["result"]["live"]
    served = page(server12)
    if after != "launch":  # the server had the release: it finished the deploy on its own
        assert live != before, seen
    if live == before:
        assert f"killed after {after}" not in served
    else:  # the server carried the deploy through
        assert f"killed after {after}" in served, seen
    change_code(project, f"next deploy after {after}")
    onebox("deploy", cwd=project)
    assert f"next deploy after {after}" in page(server12)


def fetch_status(server: Server) -> int:
    return fetch(f"https://{DOMAIN}/", server.ca, resolve=f"{DOMAIN}:443:{server.address}").status


def test_second_deploy_while_one_runs_is_refused(server12: Server, project: Path):
    change_code(project, "concurrent")
    first = onebox_background("deploy", cwd=project)
    assert first.stdout is not None
    for line in first.stdout:  # the first one holds the lock from its first step on
        if "unpack release" in line:
            break
    second = onebox("deploy", cwd=project, check=False)
    rollback = onebox("rollback", cwd=project, check=False)
    rest, _ = first.communicate(timeout=300)
    assert first.returncode == 0, rest
    for refused in (second, rollback):
        assert refused.returncode == 7, refused.stdout + refused.stderr
        assert "another operation is running: deploy by" in refused.stderr
        assert " since 20" in refused.stderr
    assert "concurrent" in page(server12)


def test_hooks_run_around_migrate_and_after_the_switch(server12: Server, project: Path):
    config = project / "onebox.toml"
    original = config.read_text()
    config.write_text(
        original.replace(
            "release = []",
            'release = []\nbefore_migrate = ["echo before > $MEDIA_ROOT/.hook-before"]\n'
            'after_switch = ["echo $ONEBOX_RELEASE > $MEDIA_ROOT/.hook-after", "false"]',
        )
    )
    try:
        result = onebox_json("deploy", cwd=project)["result"]
    finally:
        config.write_text(original)
    assert result["hooks_failed"] == ["false"]  # reported; the deploy itself succeeded
    media = "/srv/rel/shared/media"
    assert server12.ssh(f"cat {media}/.hook-before").strip() == "before"
    assert server12.ssh(f"cat {media}/.hook-after").strip() == result["release"]
    assert onebox_json("releases", cwd=project)["result"]["live"] == result["release"]
    assert len(onebox_json("releases", cwd=project)["result"]["releases"]) <= 5  # [deploy] keep


def test_maintenance_mode_on_and_off(server12: Server, project: Path):
    onebox("maintenance", "on", cwd=project)
    try:
        down = fetch(f"https://{DOMAIN}/", server12.ca, resolve=f"{DOMAIN}:443:{server12.address}")
    finally:
        onebox("maintenance", "off", cwd=project)
    assert down.status == 503 and down.headers["retry-after"] == "60"
    assert "Down for maintenance" in down.body
    assert fetch_status(server12) == 200


def changed_steps(document: dict) -> list[str]:
    steps = [e for e in document["steps"] if e["event"] == "step"]
    return [e["name"] for e in steps if e["status"] == "changed"]


def planned_changes(plan: list[dict], step: str) -> list[dict]:
    return next(entry["changes"] for entry in plan if entry["step"] == step)


def test_a_dry_run_says_what_the_run_then_does(server12: Server, project: Path):
    """A pending migration and another [app] workers: `deploy --dry-run` shows the
    migration, the unit's diff and the restart, changes nothing; the real deploy then
    does exactly the steps it said. The same for `setup`."""
    config = project / "onebox.toml"
    original = config.read_text()
    assert "workers = 2\n" in original
    config.write_text(original.replace("workers = 2\n", "workers = 3\n"))
    add_table(project, "Planned")
    try:
        before = onebox_json("releases", cwd=project)["result"]
        dry = onebox_json("deploy", "--dry-run", cwd=project)
        plan = dry["result"]["plan"]
        migration = [c["target"] for c in planned_changes(plan, "migrate")]
        assert (
            len(migration) == 1
            and migration[0].startswith("guestbook.")
            and "planned" in migration[0]
        )
        unit = planned_changes(plan, "systemd units")[0]
        # (the unit's fallback for releases made before onebox sized them; the release's
        # own number is in its release.env)
        assert "-Environment=ONEBOX_WORKERS=2 " in unit["diff"]
        assert "+Environment=ONEBOX_WORKERS=3 " in unit["diff"]
        start = planned_changes(plan, "start")[0]["target"]
        assert start.startswith("start onebox-rel@")
        # nothing changed: the same releases, the migration not applied, the old unit
        assert onebox_json("releases", cwd=project)["result"] == before
        assert "planned" not in server12.ssh("sqlite3 /srv/rel/shared/db/db.sqlite3 .tables")
        assert "ONEBOX_WORKERS=2 " in server12.ssh("cat /etc/systemd/system/onebox-rel@.service")
        assert "dry run: nothing was done" in onebox("deploy", "--dry-run", cwd=project).stdout

        real = onebox_json("deploy", cwd=project)
        assert changed_steps(real) == [entry["name"] for entry in plan if entry["changed"]]
        assert "guestbook_planned" in server12.ssh("sqlite3 /srv/rel/shared/db/db.sqlite3 .tables")

        config.write_text(original)  # back to 2 workers: setup alone rewrites the unit
        setup_plan = onebox_json("setup", "--dry-run", cwd=project)["result"]["plan"]
        predicted = [entry["name"] for entry in setup_plan if entry["changed"]]
        assert predicted == ["systemd units"], setup_plan
        assert onebox_json("setup", cwd=project)["result"]["changed"] == predicted
    finally:
        config.write_text(original)
    onebox("deploy", cwd=project)

"""Running the release's own Django: manage.py commands and reading its real settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .paths import AppPaths
from .protocol import AgentError
from .system import run, tail

# Printed by a tiny script run in the release, so onebox learns the settings' real values
# and the state of the migrations (None when the database does not answer: migrate will
# then say why).
SETTINGS_PROBE = """
import json, os, django
django.setup()
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
on_disk = MigrationLoader(None, ignore_no_migrations=True)  # no database needed
disk = on_disk.disk_migrations
name = lambda key: f"{key[0]}.{key[1]}"
default = settings.DATABASES.get("default", {})
sqlite = str(default.get("NAME") or "") if "sqlite3" in default.get("ENGINE", "") else ""
release = os.environ["ONEBOX_PROBE_RELEASE"].rstrip("/") + "/"
# A SQLite file inside the release (BASE_DIR / "db.sqlite3"): connecting would make an
# empty one there; the agent puts a link to the app's data in its place first.
in_release = sqlite if os.path.realpath(sqlite).startswith(release) else ""
try:
    if in_release and not os.path.islink(in_release):
        raise LookupError(in_release)
    executor = MigrationExecutor(connection)
    applied = sorted(map(name, executor.loader.applied_migrations))
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    pending = [f"{m.app_label}.{m.name}" for m, backwards in plan]
except Exception:
    applied = pending = None
# Apps with models and no migrations: `migrate` makes their tables (syncdb), so it runs
# even with nothing pending.
from django.apps import apps
unmigrated = sorted(
    a.label for a in apps.get_app_configs() if a.label in on_disk.unmigrated_apps
    and any(m._meta.managed and not m._meta.proxy for m in a.get_models())
)
print("ONEBOX-SETTINGS " + json.dumps({
    "SQLITE_IN_RELEASE": in_release,
    "MIGRATIONS": sorted(map(name, disk)),
    "APPLIED": applied,
    "PENDING": pending,
    "UNMIGRATED": unmigrated,
    "STATIC_URL": str(settings.STATIC_URL or ""),
    "STATIC_ROOT": str(settings.STATIC_ROOT or ""),
    "MEDIA_URL": str(settings.MEDIA_URL or ""),
    "MEDIA_ROOT": str(settings.MEDIA_ROOT or ""),
    "DEBUG": bool(settings.DEBUG),
}))
"""

# Migrations applied to the database that a release's code does not have (what stands
# in the way of rolling back to it), and all applied ones.
MIGRATIONS_PROBE = """
import json, django
django.setup()
from django.db import connection
from django.db.migrations.loader import MigrationLoader
loader = MigrationLoader(connection, ignore_no_migrations=True)
name = lambda key: f"{key[0]}.{key[1]}"
print("ONEBOX-MIGRATIONS " + json.dumps({
    "applied": sorted(map(name, loader.applied_migrations)),
    "newer": sorted(map(name, set(loader.applied_migrations) - set(loader.disk_migrations))),
}))
"""


# The messages of `manage.py check --deploy`, as data (its text output is for people).
DEPLOY_CHECK_PROBE = """
import json, django
django.setup()
from django.core import checks
found = [
    {"id": m.id or "", "level": m.level, "msg": str(m.msg), "hint": str(m.hint or ""),
     "obj": "" if m.obj is None else str(m.obj)}
    for m in checks.run_checks(include_deployment_checks=True)
    if not m.is_silenced()
]
print("ONEBOX-CHECKS " + json.dumps({"messages": found}))
"""

# Run with the release's Python: it imports Django, the agent does not.
CHECK_SOURCE = Path(__file__).with_name("migration_check.py")


class Release:
    """A release directory and how to run its Python with the app's environment."""

    def __init__(self, app: str, path: Path, env: dict[str, str], manage: str) -> None:
        self.app, self.path, self.env, self.manage = app, path, env, manage
        self.references: dict[str, str] = {}  # [env] vars resolved on the server

    @property
    def python(self) -> str:
        return str(self.path / ".venv" / "bin" / "python")

    @property
    def workdir(self) -> Path:
        return (self.path / self.manage).parent

    def shell(self, command: str, what: str) -> str:
        env = {
            **self.env,
            "PATH": f"{self.path / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "VIRTUAL_ENV": str(self.path / ".venv"),
        }
        result = run(
            ["/bin/sh", "-c", command],
            env=env,
            cwd=self.path,
            user=self.app,
            check=False,
            timeout=1800,
        )
        self._check(result, what, command)
        return result.stdout

    def manage_py(self, *args: str, what: str) -> str:
        argv = [self.python, str(self.path / self.manage), *args]
        result = run(argv, env=self.env, cwd=self.workdir, user=self.app, check=False, timeout=1800)
        self._check(result, what, " ".join(["manage.py", *args]))
        return result.stdout

    def deploy_check(self) -> list[dict[str, object]]:
        """What Django's own `check --deploy` reports (SILENCED_SYSTEM_CHECKS left out):
        one {"id", "level", "msg", "hint", "obj"} per message, for deploy_check.py to judge."""
        found = self.probe(DEPLOY_CHECK_PROBE, "ONEBOX-CHECKS", "running Django's deploy check")
        return found["messages"]

    def settings(self) -> dict[str, Any]:
        return self.probe(SETTINGS_PROBE, "ONEBOX-SETTINGS", "loading the Django settings")

    def migrations(self) -> dict[str, list[str]]:
        """{"applied": [...], "newer": [...]}, read from the database by this release."""
        return self.probe(MIGRATIONS_PROBE, "ONEBOX-MIGRATIONS", "reading the applied migrations")

    def check_migrations(self) -> list[dict[str, str]]:
        """The pending migrations' operations, each compatible, breaking or unchecked."""
        found = self.probe(
            CHECK_SOURCE.read_text(), "ONEBOX-MIGRATION-CHECK", "checking the migrations"
        )
        return found["operations"]

    def probe(self, source: str, marker: str, what: str, timeout: float = 300, **env: str) -> dict:
        """Run `source` in the release (Django's settings loaded by it) and return the
        JSON it printed after `marker`; `env`: values added to the release's own."""
        # argv shaped like a manage.py command's: settings that read sys.argv[1] (to tell
        # `test` or `collectstatic` apart) load here as they do under manage.py.
        result = run(
            [self.python, "-c", probe_code(str(self.path / self.manage), source)],
            env={**self.env, "ONEBOX_PROBE_RELEASE": str(self.path), **env},
            cwd=self.workdir,
            user=self.app,
            check=False,
            timeout=timeout,
        )
        self._check(result, what, "python -c <onebox probe>")
        for line in result.stdout.splitlines():
            if line.startswith(marker + " "):
                return json.loads(line.removeprefix(marker + " "))
        raise AgentError(f"{what} printed no result", output=tail(result.stdout))

    def _check(self, result, what: str, command: str) -> None:
        if result.returncode == 0:
            return
        output = tail(result.stdout + "\n" + result.stderr, 30)
        raise AgentError(
            f"{what} failed (exit {result.returncode})",
            output=output,
            command=command,
            hint=hint_for(output),
        )


def probe_code(manage: str, source: str) -> str:
    """`python -c` code that runs a probe with sys.argv shaped like a manage.py command's
    (settings that read sys.argv[1] load as under manage.py). The probe is compiled on its
    own: it may begin with `from __future__ import ...`."""
    argv = [manage, "check"]
    return f"import sys\nsys.argv = {argv!r}\nexec(compile({source!r}, 'onebox', 'exec'))"


def hint_for(output: str) -> str:
    """Turn the commonest Django start-up failures into a next step."""
    missing = re.search(r"KeyError: '([A-Za-z_][A-Za-z0-9_]*)'", output) or re.search(
        r"[Ss]et the ([A-Z_][A-Z0-9_]*) environment variable", output
    )
    if missing:
        name = missing.group(1)
        return (
            f"the settings need the environment variable {name}: "
            f"run `onebox env set {name}=...` and deploy again"
        )
    module = re.search(r"ModuleNotFoundError: No module named '([^']+)'", output)
    if module:
        return (
            f"the module {module.group(1)!r} is not installed: add its package to your "
            "dependencies (and lock them), or fix the import"
        )
    static = re.search(r"Missing staticfiles manifest entry for '([^']+)'", output)
    if static:
        return (
            f"a template asks for the static file {static.group(1)!r}, which collectstatic "
            "did not find: add it to an app's static/ folder or STATICFILES_DIRS (a prebuilt "
            "one: commit it into STATIC_ROOT with its staticfiles.json entry)"
        )
    written = re.search(r"(?:Read-only file system|Permission denied): '([^']+)'", output)
    if written:
        name = written.group(1)
        beat = "celerybeat-schedule" in name
        state = AppPaths("APP").state
        return f"the app may not write {name!r}: " + (
            "give celery beat a schedule file where it may "
            f"(--schedule {state}/celerybeat-schedule), or use "
            "django-celery-beat's DatabaseScheduler"
            if beat
            else "its release is read-only, and it writes only under MEDIA_ROOT and "
            f"{state} (the database aside)"
        )
    if "ImproperlyConfigured" in output:
        return "the settings are incomplete for production; the message above says what"
    return "the output above is the command's own; fix the cause and deploy again"

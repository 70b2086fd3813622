"""What `onebox init` proposes for [processes] and [services]: the task queue a project
uses, read from its source and dependencies (nothing imported).

Celery (`app = Celery(...)` and celery among the dependencies) gets a worker, and beat
when django-celery-beat is installed or a beat schedule is configured; RQ, Huey and
django-q2 get their worker commands. Redis is proposed as the broker when one of them
uses it, or as a cache when the settings cache in Redis. Each proposal says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from onebox.agent.paths import AppPaths

DEPENDENCY_FILES = ("requirements*.txt", "requirements/*.txt", "pyproject.toml", "Pipfile",
                    "Pipfile.lock", "uv.lock", "setup.cfg", "setup.py")  # fmt: skip
CELERY_APP = re.compile(r"^\s*(\w+)\s*=\s*Celery\(", re.MULTILINE)
REDIS_ENV = {"REDIS_URL", "CELERY_BROKER_URL", "REDIS_PASSWORD"}


@dataclass
class Proposal:
    processes: dict[str, str] = field(default_factory=dict)
    redis: dict[str, str] | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def provided_env(self) -> set[str]:
        """Variables onebox sets when it runs Redis: not secrets the user must set."""
        return REDIS_ENV if self.redis is not None else set()


def dependencies_text(root: Path) -> str:
    texts = []
    for pattern in DEPENDENCY_FILES:
        for path in sorted(root.glob(pattern)):
            texts.append(path.read_text(errors="replace").lower())
    return "\n".join(texts)


def depends_on(text: str, package: str) -> bool:
    return re.search(rf"(^|[\s\"'\[,=])({re.escape(package)})\b", text, re.MULTILINE) is not None


def propose(
    root: Path, project_dir: Path, settings_text: str, python_files: list[Path], name: str
) -> Proposal:
    deps = dependencies_text(root)
    found = Proposal()
    celery = celery_app(project_dir, python_files) if depends_on(deps, "celery") else None
    sources = (
        settings_text
        + "\n"
        + "\n".join(p.read_text(errors="replace") for p in python_files if "celery" in p.name)
    )
    if celery:
        found.processes["worker"] = f"celery -A {celery} worker --concurrency 2"
        found.reasons.append(f"worker: a Celery app in {celery} (celery in the dependencies)")
        if "django_celery_beat" in settings_text:
            scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
            found.processes["beat"] = f"celery -A {celery} beat --scheduler {scheduler}"
            found.reasons.append("beat: django_celery_beat is installed (its schedules live in "
                                 "the database)")  # fmt: skip
        elif re.search(r"CELERY_BEAT_SCHEDULE|beat_schedule", sources):
            # the release is read-only: beat's schedule file goes where the app may write
            found.processes["beat"] = (
                f"celery -A {celery} beat --schedule {AppPaths(name).state}/celerybeat-schedule"
            )
            found.reasons.append("beat: a beat schedule is configured")
        if depends_on(deps, "redis") or "redis://" in sources or "REDIS" in sources:
            found.redis = {"role": "broker"}
            found.reasons.append("redis: Celery's broker (nothing evicted, REDIS_URL and "
                                 "CELERY_BROKER_URL set for the app)")  # fmt: skip
    elif depends_on(deps, "django-rq") or "django_rq" in settings_text:
        found.processes["worker"] = "python manage.py rqworker default"
        found.redis = {"role": "broker"}
        found.reasons.append("worker and redis: django-rq (RQ's queue lives in Redis)")
    elif "huey.contrib.djhuey" in settings_text:
        found.processes["worker"] = "python manage.py run_huey"
        found.reasons.append("worker: Huey (huey.contrib.djhuey in INSTALLED_APPS)")
        if depends_on(deps, "redis"):
            found.redis = {"role": "broker"}
            found.reasons.append("redis: Huey's queue")
    elif "django_q" in settings_text:
        found.processes["worker"] = "python manage.py qcluster"
        found.reasons.append("worker: django-q2's cluster (django_q in INSTALLED_APPS)")
        if "redis" in settings_text.lower() and depends_on(deps, "redis"):
            found.redis = {"role": "broker"}
            found.reasons.append("redis: django-q2's broker")
    # A cache in Redis, with a Redis client to reach it: settings that switch one on only
    # "where one runs" and ship no client would break the day REDIS_URL appears.
    client = depends_on(deps, "redis") or depends_on(deps, "django-redis")
    if found.redis is None and client and re.search(r"backends\.redis|django_redis", settings_text):
        found.redis = {"role": "cache"}
        found.reasons.append("redis: the settings cache in Redis (least recently used evicted)")
    return found


def celery_app(project_dir: Path, python_files: list[Path]) -> str | None:
    """The -A of the project's Celery app: the package whose __init__ imports it (the
    layout Celery's Django guide gives), else the module that makes it."""
    for path in python_files:
        if path.name == "__init__.py" or not CELERY_APP.search(path.read_text(errors="replace")):
            continue
        module = ".".join(path.relative_to(project_dir).with_suffix("").parts)
        package = path.parent / "__init__.py"
        if package.is_file() and re.search(r"from\s+\.\w*\s+import|celery_app",
                                           package.read_text(errors="replace")):  # fmt: skip
            return module.rsplit(".", 1)[0] if "." in module else module
        return module
    return None

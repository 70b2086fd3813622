"""[processes], [schedule] and Procfiles: parsed, converted and refused as a user reads it."""

from pathlib import Path

import pytest

from onebox.api import unit_context
from onebox.background import request_part
from onebox.config import load_config, load_project
from onebox.errors import ConfigError
from onebox.timers import to_calendar

APP = """
[app]
name = "mon"
settings = "hc.settings"
wsgi = "hc.wsgi:application"
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "onebox.toml"
    path.write_text(APP + text)
    return load_config(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.message


@pytest.mark.parametrize(
    ("cron", "calendar"),
    [
        ("*/15 * * * *", "*-*-* *:00/15:00"),
        ("0 3 * * *", "*-*-* 03:00:00"),
        ("30 2 * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00"),
        ("0 0 1 jan,jul *", "*-01,07-01 00:00:00"),
        ("5,10-20/5 * * * 0,7", "Sun *-*-* *:05,10,15,20:00"),
        ("@weekly", "Sun *-*-* 00:00:00"),
        ("@hourly", "*-*-* *:00:00"),
        ("daily", "daily"),
        ("Mon *-*-* 09:00:00", "Mon *-*-* 09:00:00"),
    ],
)
def test_cron_lines_become_systemd_calendars(cron, calendar):
    assert to_calendar(cron) == calendar


@pytest.mark.parametrize(
    ("when", "says"),
    [
        ("0 3 1 * 1", "either one"),
        ("61 * * * *", "from 0 to 59"),
        ("@reboot", "[processes]"),
        ("every day", "neither a cron line"),
        ("*/0 * * * *", "above 0"),
        ("5-1 * * * *", "backwards"),
    ],
)
def test_bad_schedules_are_refused_with_the_reason(tmp_path, when, says):
    message = error(tmp_path, f'[schedule]\nprune = {{ command = "x", when = "{when}" }}\n')
    assert says in message and "schedule.prune.when" in message


def test_processes_short_and_long_forms(tmp_path):
    config = load(
        tmp_path,
        '[processes]\nworker = "celery -A hc worker -l info"\n'
        'beat = { command = "celery -A hc beat", stop_timeout = 60 }\n',
    )
    assert config.processes["worker"].argv == ["celery", "-A", "hc", "worker", "-l", "info"]
    assert config.processes["worker"].replicas == 1
    assert config.processes["beat"].stop_timeout == 60


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('worker = "celery worker && echo"', "sh -c"),
        ('Worker = "x"', "lowercase"),
        ('backup = "x"', "onebox uses itself"),
        ('b = { command = "celery -A hc beat", replicas = 2 }', "must run once"),
        ('w = { comand = "x" }', "did you mean 'command'"),
        ('w = ""', "empty"),
        ('w = { command = "x", stop_signal = "SIGSTOP" }', "stop_signal"),
    ],
)
def test_bad_processes_are_refused_with_the_reason(tmp_path, entry, says):
    assert says in error(tmp_path, f"[processes]\n{entry}\n")


def test_a_name_is_a_process_or_a_schedule(tmp_path):
    text = '[processes]\nx = "a"\n[schedule]\nx = { command = "b", when = "daily" }\n'
    assert "both a process and a schedule" in error(tmp_path, text)


def test_procfile_when_there_is_no_processes_table(tmp_path):
    (tmp_path / "onebox.toml").write_text(APP)
    (tmp_path / "Procfile").write_text(
        "web: gunicorn hc.wsgi --bind 0.0.0.0:$PORT\n"
        "worker: celery -A hc worker -l info\n"
        "clock: python manage.py clock && echo done\n"
        "release: python manage.py migrate\n"
        "release2: python manage.py compress\n"
    )
    project = load_project(tmp_path)
    assert project.config.processes["worker"].argv[0] == "celery"
    assert project.config.processes["clock"].argv[:2] == ["sh", "-c"]  # a shell line
    assert "web" not in project.config.processes
    assert any("web line is not used" in n for n in project.notes)
    assert any("onebox migrates" in n for n in project.notes)


def test_a_processes_table_wins_over_the_procfile(tmp_path):
    (tmp_path / "onebox.toml").write_text(APP + '[processes]\nalerts = "python manage.py x"\n')
    (tmp_path / "Procfile").write_text("worker: celery -A hc worker\n")
    assert list(load_project(tmp_path).config.processes) == ["alerts"]


def test_a_bad_procfile_line_names_the_file_and_line(tmp_path):
    (tmp_path / "onebox.toml").write_text(APP)
    (tmp_path / "Procfile").write_text("worker: celery\nthis is not a line\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert "Procfile:2" in caught.value.message


def test_units_hold_no_command_and_carry_the_stop_settings(tmp_path):
    (tmp_path / "onebox.toml").write_text(
        APP
        + '[database]\nengine = "postgresql"\n'
        + '[processes]\nworker = { command = "celery -A hc worker --loglevel=$LEVEL%", '
        + 'replicas = 2, stop_signal = "SIGINT", stop_timeout = 90 }\n'
        + '[schedule]\nprune = { command = "python manage.py prunepings", when = "*/5 * * * *" }\n'
    )
    project = load_project(tmp_path)
    part = request_part(project, unit_context(project, "mon.test"))
    unit = part["units"]["onebox-mon-worker@.service"]
    assert "celery" not in unit  # the command lives in the release, never in root's unit
    assert "KillSignal=SIGINT" in unit and "TimeoutStopSec=90" in unit
    assert "After=network.target postgresql.service" in unit
    assert "ProtectSystem=strict" in unit and "ReadWritePaths=/srv/mon/shared\n" in unit
    assert part["processes"]["worker"]["argv"][-1] == "--loglevel=$LEVEL%"
    assert part["processes"]["worker"]["replicas"] == 2
    timer = part["units"]["onebox-mon-prune.timer"]
    assert "OnCalendar=*-*-* *:00/5:00" in timer
    assert "Type=oneshot" in part["units"]["onebox-mon-prune.service"]


def celery_project(tmp_path: Path, settings_extra: str = "", deps: str = "celery[redis]\n") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "manage.py").write_text(
        'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")\n'
    )
    package = tmp_path / "proj"
    package.mkdir()
    (package / "__init__.py").write_text("from .celery import app as celery_app\n")
    (package / "celery.py").write_text('from celery import Celery\napp = Celery("proj")\n')
    (package / "settings.py").write_text(
        'import os\nINSTALLED_APPS = ["django.contrib.auth"]\n'
        'CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]\n' + settings_extra
    )
    (package / "wsgi.py").write_text("application = None\n")
    (tmp_path / "requirements.txt").write_text("Django\n" + deps)
    return tmp_path


def test_init_proposes_a_celery_worker_and_its_broker(tmp_path):
    from onebox.detect import detect

    found = detect(celery_project(tmp_path))
    assert found.processes == {"worker": "celery -A proj worker --concurrency 2"}
    assert found.redis == {"role": "broker"}
    assert "CELERY_BROKER_URL" not in found.required_env  # onebox sets it
    assert any("a Celery app in proj" in reason for reason in found.background_reasons)


def test_init_proposes_beat_with_a_schedule_file_it_can_write(tmp_path):
    from onebox.detect import detect

    found = detect(celery_project(tmp_path, 'CELERY_BEAT_SCHEDULE = {"a": {}}\n'))
    assert found.processes["beat"].endswith(
        f"--schedule /srv/{found.name}/shared/state/celerybeat-schedule"
    )
    found = detect(celery_project(tmp_path / "b", 'INSTALLED_APPS += ["django_celery_beat"]\n'))
    assert "django_celery_beat.schedulers:DatabaseScheduler" in found.processes["beat"]


def test_no_celery_dependency_no_proposal(tmp_path):
    from onebox.detect import detect

    found = detect(celery_project(tmp_path, deps=""))
    assert found.processes == {} and found.redis is None


def test_what_init_writes_loads(tmp_path):
    from onebox.init import init_project

    project = celery_project(tmp_path, 'CELERY_BEAT_SCHEDULE = {"a": {}}\n')
    path, _, _ = init_project(project, host="203.0.113.7")
    config = load_config(path)
    assert set(config.processes) == {"worker", "beat"}
    assert config.redis["role"] == "broker" and config.redis["celery"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('"yes"', "must be true, false, or a table"),
        ('{ role = "queue" }', "'cache' or 'broker'"),
        ('{ maxmemory = "lots" }', 'like "64mb"'),
    ],
)
def test_bad_redis_settings(tmp_path, value, says):
    assert says in error(tmp_path, f"[services]\nredis = {value}\n")


def test_redis_role_follows_celery(tmp_path):
    assert load(tmp_path, "[services]\nredis = true\n").redis["role"] == "cache"
    config = load(tmp_path, '[processes]\nw = "celery -A p worker"\n[services]\nredis = true\n')
    assert config.redis["role"] == "broker"


def test_redis_protocol_is_safe_for_any_password():
    from onebox.agent.redis_server import command

    assert (
        command("AUTH", "shop", "a b\r\n") == b"*3\r\n$4\r\nAUTH\r\n$4\r\nshop\r\n$5\r\na b\r\n\r\n"
    )


def test_asgi_apps_run_uvicorns_worker_behind_the_health_check(tmp_path):
    from onebox.api.server import rendered_files

    with_asgi = APP.replace("wsgi = ", 'asgi = "hc.asgi:application"\nwsgi = ')
    (tmp_path / "onebox.toml").write_text(with_asgi)
    unit = rendered_files(load_project(tmp_path), "mon.test")["unit"]
    assert "gunicorn onebox_asgi:application" in unit
    assert "--worker-class uvicorn_worker.UvicornWorker" in unit
    assert "Environment=ONEBOX_ASGI=hc.asgi:application" in unit and "ONEBOX_WSGI" not in unit
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "onebox.toml").write_text(APP.replace("wsgi = ", 'asgi = "hc asgi"\nwsgi = '))
    with pytest.raises(ConfigError) as caught:
        load_project(bad)
    assert "'app.asgi' must be module:object" in caught.value.message


@pytest.mark.parametrize(
    ("deps", "apps", "worker", "redis"),
    [
        ("django-rq\n", '"django_rq"', "python manage.py rqworker default", "broker"),
        ("huey\nredis\n", '"huey.contrib.djhuey"', "python manage.py run_huey", "broker"),
        ("django-q2\n", '"django_q"', "python manage.py qcluster", None),
    ],
)
def test_other_task_queues_get_their_worker(tmp_path, deps, apps, worker, redis):
    from onebox.detect import detect

    project = celery_project(tmp_path, f"INSTALLED_APPS += [{apps}]\n", deps=deps)
    (project / "proj" / "celery.py").unlink()
    found = detect(project)
    assert found.processes == {"worker": worker}
    assert (found.redis or {}).get("role") == redis


def test_an_optional_redis_cache_without_a_client_is_not_proposed(tmp_path):
    """club's settings turn a Redis cache on only if REDIS_URL is set, and ship no Redis
    client: proposing Redis would set REDIS_URL and break every page."""
    from onebox.detect import detect

    cache = (
        'if "REDIS_URL" in os.environ:\n'
        '    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",\n'
        '                          "LOCATION": os.environ["REDIS_URL"]}}\n'
    )
    project = celery_project(tmp_path, cache, deps="")
    (project / "proj" / "celery.py").unlink()
    assert detect(project).redis is None
    (project / "requirements.txt").write_text("Django\nredis\n")
    assert detect(project).redis == {"role": "cache"}

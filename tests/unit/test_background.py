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

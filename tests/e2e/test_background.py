"""Processes and scheduled commands ([processes], [schedule]) on a real server.

monitor (tests/fixtures/monitor) is shaped like healthchecks.io: its README says to run
`manage.py sendalerts` all the time and `manage.py prunepings` daily. Each life of the
alert sender is a row (release, code version, start, stop) the site shows at /status/,
so the test sees which code ran when, and that two never overlapped.

On the Debian 13 practice server test_data.py uses too.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import FIXTURES, Server, copy_project, edit, onebox, onebox_json, use_deploy_user

pytestmark = pytest.mark.e2e

DOMAIN = "monitor.test"


def git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=project,
        check=True,
        capture_output=True,
    )


def site_status(server: Server) -> dict:
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--cacert", str(server.ca),
         "--resolve", f"{DOMAIN}:443:{server.address}", f"https://{DOMAIN}/status/"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def alive(server: Server, version: str, timeout: float = 20) -> dict:
    """The alert sender's current life, once it runs `version` and beats."""
    deadline = time.monotonic() + timeout
    while True:
        runs = site_status(server)["runs"]
        live = [r for r in runs if r["stopped"] is None and r["age"] < 3]
        if live and live[-1]["version"] == version:
            return live[-1]
        assert time.monotonic() < deadline, f"no alert sender of version {version}: {runs}"
        time.sleep(0.5)


def set_version(project: Path, version: str) -> None:
    settings = project / "hc" / "settings.py"
    settings.write_text(re.sub(r'VERSION = "\d+"', f'VERSION = "{version}"', settings.read_text()))
    git(project, "commit", "-qam", f"version {version}")


def deploy(project: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return onebox("deploy", cwd=project, check=check)


@pytest.fixture(scope="module")
def monitor(server13, tmp_path_factory) -> Path:
    """The fixture set up as its README says, with the two commands from it in onebox.toml."""
    project = copy_project(FIXTURES / "monitor", tmp_path_factory.mktemp("monitor") / "monitor")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "monitor")
    onebox("init", "--host", server13.host, "--domain", DOMAIN, cwd=project)
    config = project / "onebox.toml"
    use_deploy_user(config)
    with config.open("a") as handle:
        handle.write(
            "\n[processes]\n"
            'alerts = "python manage.py sendalerts"\n'
            "\n[schedule]\n"
            'prune = { command = "python manage.py prunepings", when = "@daily" }\n'
            'prune-fail = { command = "python manage.py prunepings --fail", when = "0 4 * * *" }\n'
        )
    git(project, "add", ".")
    git(project, "commit", "-qm", "onebox")
    onebox("setup", cwd=project)
    deploy(project)
    server13.ca.write_text(onebox("ca", cwd=project).stdout)
    return project


def test_processes_move_with_deploys_and_rollbacks(server13, monitor):
    first = alive(server13, "1")
    release1 = first["release"]

    # The units run sandboxed like the web slots.
    for unit in ("onebox-monitor-alerts@1", "onebox-monitor-prune"):
        out = server13.ssh(f"systemd-analyze security --no-pager {unit}.service | tail -1")
        score = float(re.search(r"(\d+\.\d+)", out).group(1))
        assert score <= 2.0, out

    checks = onebox_json("audit", cwd=monitor, check=False)["result"]["checks"]
    sandboxes = {c["name"]: c["status"] for c in checks if c["name"].startswith("sandbox of")}
    assert sandboxes["sandbox of onebox-monitor-alerts@1.service"] == "pass", sandboxes
    assert sandboxes["sandbox of onebox-monitor-prune.service"] == "pass", sandboxes

    status = onebox_json("status", cwd=monitor, check=False)["result"]
    (process,) = status["background"]["processes"]
    assert process["name"] == "alerts@1" and process["state"] == "active"
    assert process["release"] == release1

    # A deploy: the alert sender runs the new code, and never beside the old one.
    set_version(monitor, "2")
    deploy(monitor)
    second = alive(server13, "2")
    assert second["release"] != release1
    runs = site_status(server13)["runs"]
    lives = sorted((r["started"], r["stopped"] or time.time() + 1e6) for r in runs)
    for (_, stopped), (started, _) in itertools.pairwise(lives):
        assert started >= stopped, f"two alert senders ran at once: {runs}"
    logs = onebox("logs", "--process", "alerts", "-n", "20", cwd=monitor).stdout
    assert "sendalerts sendalerts started, version 2" in logs

    # A release whose alert sender crashes at start: web and process stay on version 2.
    set_version(monitor, "3")
    command = monitor / "hc/api/management/commands/sendalerts.py"
    edit(
        command,
        "        stopping = []\n",
        "        stopping = []\n"
        '        if settings.VERSION == "3":\n'
        '            raise RuntimeError("SMTP_HOST is not set: cannot send alerts")\n',
    )
    git(monitor, "commit", "-qam", "crash")
    failed = deploy(monitor, check=False)
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "the process alerts@1 crashed right after it started" in out
    assert "RuntimeError: SMTP_HOST is not set" in out  # the log tail
    assert "web traffic is back on release" in out and "and the processes too" in out
    assert site_status(server13)["version"] == "2"
    assert alive(server13, "2")["release"] == second["release"]

    # Rollback moves the process too.
    onebox("rollback", cwd=monitor)
    assert alive(server13, "1")["release"] == release1
    assert site_status(server13)["version"] == "1"
    set_version(monitor, "4")  # past the crash, for the tests below


def test_schedules_run_on_their_timer_and_failures_show(server13, monitor):
    timers = server13.ssh("systemctl list-timers --all --no-pager 'onebox-monitor-prune*'")
    assert "onebox-monitor-prune.timer" in timers and "onebox-monitor-prune-fail.timer" in timers
    # what the timers would start, started now
    server13.ssh("systemctl start onebox-monitor-prune.service")
    server13.ssh("systemctl start onebox-monitor-prune-fail.service", check=False)
    assert site_status(server13)["prunes"], "prunepings did not run"

    result = onebox("status", cwd=monitor, check=False).stdout
    assert re.search(r"schedule prune \(\*-\*-\* 00:00:00\): last run .* ok", result), result
    assert re.search(r"schedule prune-fail .*FAILED \(exit status 1\)", result), result
    entries = onebox_json("history", cwd=monitor)["result"]["entries"]
    runs = [e for e in entries if e["action"] == "schedule"]
    assert [e["result"] for e in runs[-2:]] == ["ok", "failed"]
    assert (
        "CommandError: the ping table is locked"
        in onebox("logs", "--process", "prune-fail", cwd=monitor).stdout
    )


def test_run_streams_output_and_returns_the_exit_status(monitor):
    checked = onebox("run", "--", "python", "manage.py", "check", cwd=monitor)
    assert "System check identified no issues" in checked.stdout
    failing = onebox("run", "--", "python", "-c", "import sys; print('out'); sys.exit(3)",
                     cwd=monitor, check=False)  # fmt: skip
    assert failing.returncode == 3 and "out" in failing.stdout
    missing = onebox("run", "--", "no-such-program", cwd=monitor, check=False)
    assert missing.returncode == 127 and "cannot run 'no-such-program'" in missing.stderr


def test_a_process_that_ignores_sigterm_is_killed_and_removed_ones_go(server13, monitor):
    config = monitor / "onebox.toml"
    edit(
        config,
        'alerts = "python manage.py sendalerts"\n',
        'alerts = "python manage.py sendalerts"\n'
        'stubborn = { command = "python manage.py sendalerts --name stubborn '
        '--ignore-sigterm", stop_timeout = 2 }\n',
    )
    git(monitor, "commit", "-qam", "stubborn")
    deploy(monitor)
    edit(config, "stubborn = ", "# stubborn = ")
    git(monitor, "commit", "-qam", "no stubborn")
    done = deploy(monitor)
    out = done.stdout + done.stderr
    assert "the process stubborn@1 did not stop within its stop_timeout" in out
    units = server13.ssh("ls /etc/systemd/system/ | grep onebox-monitor- || true")
    assert "onebox-monitor-stubborn@.service" not in units
    assert "onebox-monitor-alerts@.service" in units
    active = server13.ssh("systemctl is-active onebox-monitor-stubborn@1.service || true")
    assert active.strip() in ("inactive", "failed")


def test_a_command_missing_from_the_release_changes_nothing(server13, monitor):
    config = monitor / "onebox.toml"
    edit(config, 'alerts = "python manage.py sendalerts"\n',
         'alerts = "python manage.py sendalerts"\nworker = "celery -A hc worker"\n')  # fmt: skip
    git(monitor, "commit", "-qam", "celery, not installed")
    before = site_status(server13)["release"]
    failed = deploy(monitor, check=False)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "[processes] worker: `celery` is not in the release's virtualenv" in out
    assert "add the package that provides celery to your dependencies" in out
    assert site_status(server13)["release"] == before
    edit(config, 'worker = "celery -A hc worker"\n', "")
    git(monitor, "commit", "-qam", "no celery")

"""Processes and scheduled commands ([processes], [schedule]) on a real server.

monitor (tests/fixtures/monitor) is shaped like healthchecks.io: its README says to run
`manage.py sendalerts` all the time and `manage.py prunepings` daily. Each life of the
alert sender is a row (release, code version, start, stop) the site shows at /status/,
so the test sees which code ran when, and that two never overlapped.

On the Debian 13 practice server test_data.py uses too.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import (
    FIXTURES,
    Server,
    copy_project,
    edit,
    fetch,
    onebox,
    onebox_json,
    use_deploy_user,
)

pytestmark = pytest.mark.e2e

DOMAIN = "monitor.test"


def git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=project,
        check=True,
        capture_output=True,
    )


def get(server: Server, domain: str, path: str) -> str:
    """A page's body over HTTPS (conftest's fetch: curl, the server's CA)."""
    return fetch(
        f"https://{domain}{path}", server.ca, resolve=f"{domain}:443:{server.address}"
    ).body


def site_status(server: Server) -> dict:
    return json.loads(get(server, DOMAIN, "/status/"))


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
    (settings,) = project.glob("*/settings.py")
    settings.write_text(re.sub(r'VERSION = "\d+"', f'VERSION = "{version}"', settings.read_text()))
    git(project, "commit", "-qam", f"version {version}")


def deploy(project: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return onebox("deploy", cwd=project, check=check)


def set_up(
    server: Server, fixture: str, domain: str, tmp: Path, added: str = ""
) -> tuple[Path, str]:
    """A fixture as a git project, `onebox init` (what it printed), `added` appended to
    onebox.toml, then setup and a first deploy."""
    project = copy_project(FIXTURES / fixture, tmp / fixture)
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", fixture)
    out = onebox("init", "--host", server.host, "--domain", domain, cwd=project).stdout
    config = project / "onebox.toml"
    use_deploy_user(config)
    with config.open("a") as handle:
        handle.write(added)
    git(project, "add", ".")
    git(project, "commit", "-qm", "onebox")
    onebox("setup", cwd=project)
    deploy(project)
    server.ca.write_text(onebox("ca", cwd=project).stdout)
    return project, out


@pytest.fixture(scope="module")
def monitor(server13, tmp_path_factory) -> Path:
    """The fixture set up as its README says, with the two commands from it in onebox.toml."""
    project, _ = set_up(
        server13,
        "monitor",
        DOMAIN,
        tmp_path_factory.mktemp("monitor"),
        "\n[processes]\n"
        'alerts = "python manage.py sendalerts"\n'
        "\n[schedule]\n"
        'prune = { command = "python manage.py prunepings", when = "@daily" }\n'
        'prune-fail = { command = "python manage.py prunepings --fail", when = "0 4 * * *" }\n',
    )
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
        'alerts = { command = "python manage.py sendalerts", replicas = 2 }\n'
        'stubborn = { command = "python manage.py sendalerts --name stubborn '
        '--ignore-sigterm", stop_timeout = 2 }\n',
    )
    git(monitor, "commit", "-qam", "stubborn")
    deploy(monitor)
    running = onebox_json("status", cwd=monitor, check=False)["result"]["background"]
    states = {p["name"]: p["state"] for p in running["processes"]}
    assert states == {"alerts@1": "active", "alerts@2": "active", "stubborn@1": "active"}
    edit(config, "stubborn = ", "# stubborn = ")
    edit(config, "replicas = 2", "replicas = 1")
    git(monitor, "commit", "-qam", "no stubborn")
    done = deploy(monitor)
    out = done.stdout + done.stderr
    assert "the process stubborn@1 did not stop within its stop_timeout" in out
    units = server13.ssh("ls /etc/systemd/system/ | grep onebox-monitor- || true")
    assert "onebox-monitor-stubborn@.service" not in units
    assert "onebox-monitor-alerts@.service" in units
    for unit in ("stubborn@1", "alerts@2"):
        active = server13.ssh(f"systemctl is-active onebox-monitor-{unit}.service || true")
        assert active.strip() in ("inactive", "failed"), unit


def test_a_command_missing_from_the_release_changes_nothing(server13, monitor):
    config = monitor / "onebox.toml"
    edit(config, "\n[processes]\n", '\n[processes]\nworker = "celery -A hc worker"\n')
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


# ------------------------------------------------------------------ Celery and Redis

NEWSLETTER = "newsletter.test"


class Traffic:
    """GET requests at a steady pace on one kept-alive connection while a deploy or a
    rollback runs, every answer checked. Bounded: the paths given (one request each), 90 s."""

    def __init__(self, server: Server, domain: str, paths: list[str], rate: float = 15) -> None:
        import ssl
        import threading

        from .load import _Connection

        context = ssl.create_default_context(cafile=str(server.ca))
        self.connect = lambda: _Connection(server.address, domain, context)
        self.paths, self.rate = paths, rate
        self.done: list[str] = []
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        connection = self.connect()
        deadline = time.monotonic() + 90
        for path in self.paths:
            if time.monotonic() > deadline:
                break
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.done.append(path)
                else:
                    self.failures.append(f"{path}: HTTP {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{path}: {exc!r}")
                connection.close()
                connection = self.connect()
            time.sleep(1 / self.rate)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=120)


def deliveries(server: Server) -> dict:
    return json.loads(get(server, NEWSLETTER, "/deliveries/"))


def send(server: Server, seq: int) -> str:
    """A web request that queues the task SEQ."""
    return get(server, NEWSLETTER, f"/send/{seq}/")


def delivered(server: Server, seqs: list[int], timeout: float = 60) -> dict[str, int]:
    """How often each task ran, once every one of them has (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = deliveries(server)["counts"]
        if all(str(seq) in counts for seq in seqs) or time.monotonic() > deadline:
            return {str(seq): counts.get(str(seq), 0) for seq in seqs}
        time.sleep(1)


@pytest.fixture(scope="module")
def newsletter(server13, tmp_path_factory) -> Path:
    """Celery + Redis + beat, set up with what `onebox init` proposes and nothing else."""
    project, out = set_up(server13, "newsletter", NEWSLETTER, tmp_path_factory.mktemp("nl"))
    assert "proposed      worker: a Celery app in newsletter" in out, out
    assert "proposed      beat: a beat schedule is configured" in out, out
    assert "proposed      redis: Celery's broker" in out, out
    return project


def test_celery_tasks_from_web_requests_survive_deploys_and_rollbacks(server13, newsletter):
    assert '"queued": 1' in send(server13, 1)
    assert delivered(server13, [1]) == {"1": 1}

    figures = {}
    for step, start in (("deploy", 1000), ("rollback", 2000)):
        if step == "deploy":
            set_version(newsletter, "2")
        sends = [f"/send/{seq}/" for seq in range(start, start + 450)]
        with Traffic(server13, NEWSLETTER, sends) as load:
            time.sleep(2)
            onebox(step, cwd=newsletter)
        sent = [int(path.split("/")[2]) for path in load.done]
        counts = delivered(server13, sent)
        lost = [seq for seq, n in counts.items() if n == 0]
        twice = [seq for seq, n in counts.items() if n > 1]
        figures[step] = (len(sent), len(load.failures), len(lost), len(twice))
        assert not load.failures, load.failures[:5]
        assert not lost, f"{len(lost)} task(s) never ran: {lost[:10]}"
        assert not twice, f"{len(twice)} task(s) ran twice: {twice[:10]}"
    print(f"\ntasks queued/failed requests/lost/run twice: {figures}")

    # after the deploy the worker ran version 2's code; after the rollback, version 1's
    assert deliveries(server13)["versions"].get("2", 0) > 0
    send(server13, 5000)
    assert delivered(server13, [5000]) == {"5000": 1}

    # Redis stopped (by hand, a crash): the next deploy starts it before anything changes
    server13.ssh("systemctl stop redis-server")
    out = deploy(newsletter)
    assert "redis" in out.stdout + out.stderr
    assert server13.ssh("systemctl is-active redis-server").strip() == "active"
    send(server13, 6000)
    assert delivered(server13, [6000]) == {"6000": 1}

    # beat: one at a time, across every deploy and rollback, and it ran
    state = deliveries(server13)
    lives = sorted((b["started"], b["stopped"] or time.time() + 1e6) for b in state["beat"])
    assert len(lives) >= 3, state["beat"]
    for (_, stopped), (started, _) in itertools.pairwise(lives):
        assert started >= stopped, f"two beats ran at once: {state['beat']}"
    assert state["ticks"] > 3


def test_redis_is_local_and_needs_its_password(server13, newsletter):
    import socket

    listening = server13.ssh("ss -Hltn 'sport = :6379'")
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()}
    assert addresses and addresses <= {"127.0.0.1", "[::1]"}, listening
    assert "NOAUTH" in server13.ssh("redis-cli ping", check=False)
    # from another network namespace (this machine's): nothing answers
    with pytest.raises(OSError):
        socket.create_connection((server13.address, 6379), timeout=3).close()
    # the app's own Redis user may not reconfigure Redis
    secrets = onebox_json("env", "list", "--reveal", cwd=newsletter)["result"]
    password = secrets["values"]["REDIS_PASSWORD"]
    out = server13.ssh(
        f"REDISCLI_AUTH={password} redis-cli --user newsletter --no-auth-warning CONFIG GET dir",
        check=False,
    )
    assert "NOPERM" in out, out
    checks = onebox_json("audit", cwd=newsletter, check=False)["result"]["checks"]
    found = {c["name"]: c["status"] for c in checks if c["name"].startswith("redis")}
    assert found == {"redis listens on this server only": "pass", "redis needs a password": "pass"}


# ------------------------------------------------------------------ ASGI and websockets

CHAT = "chat.test"


@pytest.fixture(scope="module")
def chat(server13, tmp_path_factory) -> Path:
    """Channels' tutorial chat, with what `onebox init` proposes (asgi from ASGI_APPLICATION)."""
    project, out = set_up(server13, "chat", CHAT, tmp_path_factory.mktemp("chat"))
    assert "proposed      asgi: ASGI_APPLICATION = mysite.asgi.application" in out, out
    return project


def test_websockets_are_closed_cleanly_at_a_switch_and_reconnect_to_the_new_release(server13, chat):
    import asyncio
    import ssl

    import websockets

    context = ssl.create_default_context(cafile=str(server13.ca))

    def connect():
        return websockets.connect(
            f"wss://{CHAT}/ws/chat/lobby/", ssl=context, host=server13.address, port=443,
            server_hostname=CHAT, origin=f"https://{CHAT}", open_timeout=20,
        )  # fmt: skip

    async def scenario() -> tuple[int | None, dict, dict]:
        async with connect() as socket:
            assert json.loads(await socket.recv()) == {"hello": "1"}
            await socket.send(json.dumps({"message": "hi"}))
            assert json.loads(await socket.recv()) == {"message": "hi", "version": "1"}
            set_version(chat, "2")
            with Traffic(server13, CHAT, ["/"] * 600) as traffic:
                deploying = asyncio.create_task(asyncio.to_thread(deploy, chat))
                code = None
                try:
                    await asyncio.wait_for(socket.recv(), timeout=120)
                except websockets.ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else None
                await deploying
            assert not traffic.failures, traffic.failures[:5]
        async with connect() as again:
            hello = json.loads(await again.recv())
            await again.send(json.dumps({"message": "back"}))
            answer = json.loads(await again.recv())
        return code, hello, answer

    code, hello, answer = asyncio.run(scenario())
    assert code == 1012, f"closed with {code}, not 1012 (service restart)"
    assert hello == {"hello": "2"} and answer == {"message": "back", "version": "2"}
    assert get(server13, CHAT, "/") == "chat 2"

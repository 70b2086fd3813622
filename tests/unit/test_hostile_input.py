"""Bad input and faults from issue 11, where the behaviour is the client's or a pure
function's (the server's side of each is proven in tests/e2e/test_hostile.py)."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from onebox import bundle, no_deploy_user, sandbox
from onebox.agent import launch
from onebox.agent.database import my_ident, my_literal, pg_ident, pg_literal, redact
from onebox.agent.releases import new_release_id
from onebox.agent.system import write_file
from onebox.errors import ConfigError
from onebox.lock import Lock, _lock


@pytest.mark.parametrize("name", ["", "..", "../../x", "/some/dir", "a/b", "-x", "é", "a\n"])
def test_a_practice_server_name_is_never_a_path(name, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "STATE_DIR", tmp_path)
    monkeypatch.setattr(sandbox, "require_host", lambda: None)
    victim = tmp_path / "victim"
    victim.mkdir()
    with pytest.raises(sandbox.SandboxError, match="bad practice server name"):
        sandbox.destroy(name)
    with pytest.raises(sandbox.SandboxError):
        sandbox.load(name)
    assert victim.is_dir()


def test_destroy_removes_only_a_practice_server(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "STATE_DIR", tmp_path)
    monkeypatch.setattr(sandbox, "require_host", lambda: None)
    (tmp_path / "sandboxes" / "notabox").mkdir(parents=True)  # no state, no rootfs
    with pytest.raises(sandbox.SandboxError, match="no practice server named"):
        sandbox.destroy("notabox")
    assert (tmp_path / "sandboxes" / "notabox").is_dir()


def test_sql_literals_and_names_are_quoted():
    assert pg_literal("x' SUPERUSER --") == "'x'' SUPERUSER --'"
    assert pg_ident('a"b') == '"a""b"'
    assert my_literal("pa'ss\\") == "'pa''ss\\\\'"
    assert my_ident("a`b") == "`a``b`"
    assert redact("ERROR: near 'pa'ss'", "pa'ss") == "ERROR: near '********'"


def test_release_ids_follow_the_servers_clock_and_never_go_back(tmp_path):
    releases = tmp_path / "releases"
    releases.mkdir()
    paths = SimpleNamespace(releases=releases)
    # made by a client whose clock ran ahead; the server's clock is behind it
    (releases / "20301231-235959-999").mkdir()
    now = calendar.timegm((2026, 12, 1, 9, 0, 0))
    first = new_release_id(paths, now)  # type: ignore[arg-type]
    assert first == "20310101-000000-000"
    (releases / first).mkdir()
    assert new_release_id(paths, now) == "20310101-000000-001"  # type: ignore[arg-type]
    fresh = SimpleNamespace(releases=tmp_path / "none")
    assert new_release_id(fresh, now + 0.25) == "20261201-090000-250"  # type: ignore[arg-type]


def test_the_lock_hash_ignores_comments():
    pins = "django==5.2.8 \\\n    --hash=sha256:aa\n"
    one = Lock(text="# via -r /tmp/tmpabc/in.txt\n" + pins, packages=[])
    two = Lock(text="# via -r /tmp/tmpxyz/in.txt\n" + pins, packages=[])
    assert one.hash == two.hash
    assert one.hash != Lock(text=pins.replace("5.2.8", "5.2.9"), packages=[]).hash


def test_a_folder_as_requirements_names_its_files(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("django\n")
    (tmp_path / "requirements" / "production.txt").write_text("-r base.txt\n")
    with pytest.raises(ConfigError) as info:
        _lock(tmp_path, "requirements", "3.11")
    assert "is a folder" in info.value.message
    assert "requirements/production.txt" in (info.value.hint or "")


def test_large_untracked_files_are_named(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "manage.py").write_text("print()")
    (tmp_path / "dump.sql").write_bytes(b"x" * (bundle.LARGE + 1))
    subprocess.run(["git", "-C", str(tmp_path), "add", "manage.py"], check=True)
    found = bundle.collect(tmp_path, [])
    assert found.large_untracked == (("dump.sql", bundle.LARGE + 1),)
    assert bundle.collect(tmp_path, ["dump.sql"]).large_untracked == ()


def test_the_exit_code_is_never_read_from_a_half_written_file(tmp_path, monkeypatch, capsys):
    """A refusal's exit 3 came back as 1 under load: the relay read the exit-code file
    between its creation and its write."""
    (tmp_path / "events.jsonl").write_text('{"event": "error", "message": "refused"}\n')
    (tmp_path / launch.EXIT_FILE).write_text("")  # created, not yet written
    monkeypatch.setattr(launch, "unit_running", lambda unit: True)

    def finish() -> None:
        time.sleep(0.3)
        (tmp_path / launch.EXIT_FILE).write_text("3")

    threading.Thread(target=finish).start()
    assert launch.follow(tmp_path, "onebox-x") == 3


def test_a_unit_gone_without_its_exit_code_is_reported_and_systemd_is_asked_seldom(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "stderr").write_text("Killed")
    asked: list[float] = []
    monkeypatch.setattr(launch, "unit_running", lambda unit: asked.append(time.monotonic()))
    monkeypatch.setattr(launch, "GONE_FOR", 0.3)
    monkeypatch.setattr(launch, "ASK_SYSTEMD", 0.1)
    started = time.monotonic()
    assert launch.follow(tmp_path, "onebox-x") == launch.ExitCode.FAILED
    assert 0.3 < time.monotonic() - started < 2
    assert 4 <= len(asked) <= 8  # (every 0.1 s, not on each look at the files)
    error = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (
        error["message"] == "the onebox agent stopped unexpectedly" and "Killed" in error["output"]
    )


def test_run_folders_get_names_no_other_run_had(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    started: list[list[str]] = []

    def systemd_run(argv, **kwargs):
        started.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "")  # "failed": nothing to follow

    monkeypatch.setattr(launch.subprocess, "run", systemd_run)
    for number in range(3):
        work = tmp_path / f"w{number}"
        work.mkdir()
        (work / "request.json").write_text('{"action": "deploy", "app": "shop"}')
        launch.launch(str(work))
    units = {next(a for a in argv if a.startswith("--unit=")) for argv in started}
    assert len(units) == 3 and not any(str(os.getpid()) in unit for unit in units)


def test_writes_never_follow_a_planted_link(tmp_path):
    secret = tmp_path / "root-secret"
    secret.write_text("key")
    folder = tmp_path / "release" / ".onebox"
    folder.mkdir(parents=True)
    (folder / ".manifest.json.onebox-tmp").symlink_to(secret)
    (folder / "site.caddy").symlink_to(secret)
    owner = __import__("pwd").getpwuid(os.getuid()).pw_name
    group = __import__("grp").getgrgid(os.getgid()).gr_name
    write_file(folder / "manifest.json", "{}", owner=owner, group=group)
    write_file(folder / "site.caddy", "site", owner=owner, group=group)
    assert secret.read_text() == "key"
    assert (
        not (folder / "site.caddy").is_symlink() and (folder / "site.caddy").read_text() == "site"
    )


def test_a_server_without_deploy_user_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    class Target:
        host, port, name = "203.0.113.7", None, "203.0.113.7"

    assert not no_deploy_user.remembered(Target())
    no_deploy_user.remember(Target())
    assert no_deploy_user.remembered(Target())
    no_deploy_user.forget(Target())
    assert not no_deploy_user.remembered(Target())
    assert Path(tmp_path / "onebox" / "no-deploy-user.json").is_file()


def test_a_negative_log_count_is_a_usage_error():
    """`onebox logs -n -1` once reached the server and came back as the agent's usage."""
    from click.testing import CliRunner

    from onebox.cli import main

    result = CliRunner().invoke(main, ["logs", "-n", "-1"])
    assert result.exit_code == 2 and "-1 is not in the range x>=1" in result.output


def test_the_client_takes_only_its_own_runs_result(monkeypatch):
    """A run folder of an earlier run once handed its hour-old result to a new deploy."""
    from onebox import remote
    from onebox.agent.requests import StatusRequest
    from onebox.errors import RemoteStepFailed

    stream = remote.pack(StatusRequest(address="box", health_path="/"))
    mine = remote._run_token(stream)
    assert len(mine) == 16 and mine != remote._run_token(
        remote.pack(StatusRequest(address="box", health_path="/"))
    )

    class Fake:
        target = SimpleNamespace(name="box")
        login_user = "root"

        def connect(self):
            pass

        def sudo(self, argv):
            return argv

        def popen(self, argv, **kwargs):
            lines = [b'{"event": "result", "data": {"ok": 1}, "run": "' + token + b'"}\n']
            return SimpleNamespace(
                stdin=__import__("io").BytesIO(),
                stdout=iter(lines),
                stderr=__import__("io").BytesIO(b""),
                wait=lambda: 0,
            )

    token = mine.encode()
    assert remote.call(Fake(), stream, lambda event: None) == {"ok": 1}  # type: ignore[arg-type]
    token = b"0123456789abcdef"
    with pytest.raises(RemoteStepFailed, match="result of another run"):
        remote.call(Fake(), stream, lambda event: None)  # type: ignore[arg-type]

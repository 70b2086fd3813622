"""`onebox logs --access`: Caddy's JSON lines, printed readably, followed across a roll."""

from __future__ import annotations

import io
import json
import os

import pytest

from onebox.agent import access_log, commands
from onebox.agent.paths import AppPaths


def entry(uri: str, status: int = 200) -> str:
    """A line as Caddy 2.6 writes it (the fields that matter here)."""
    return json.dumps({
        "level": "info",
        "ts": 1796300000.25,
        "logger": "http.log.access.log0",
        "msg": "handled request",
        "request": {"remote_ip": "203.0.113.5", "proto": "HTTP/2.0", "method": "GET",
                    "host": "example.com", "uri": uri, "headers": {"Cookie": []}},
        "duration": 0.0087,
        "size": 15592,
        "status": status,
    }) + "\n"  # fmt: skip


def test_a_line_reads_as_when_who_what_and_how_long():
    shown = access_log.format_entry(entry("/guestbook/?page=2", 404))
    assert shown.endswith(" 203.0.113.5 GET /guestbook/?page=2 HTTP/2.0 404 15592 B 8.7 ms")
    assert shown[:4].isdigit() and "Cookie" not in shown


def test_a_line_that_is_not_caddys_json_stays_as_it_is():
    assert access_log.format_entry("not json\n") == "not json"
    assert access_log.format_entry('{"msg": "x"}\n') == '{"msg": "x"}'
    assert access_log.format_entry('{"ts": 1, "request": "x"}') == '{"ts": 1, "request": "x"}'


def test_the_last_lines_and_where_reading_stopped(tmp_path):
    log = tmp_path / "app-access.log"
    log.write_text("".join(entry(f"/{i}") for i in range(10)))
    lines, inode, offset = access_log.last_lines(log, 3)
    assert [json.loads(line)["request"]["uri"] for line in lines] == ["/7", "/8", "/9"]
    assert inode == log.stat().st_ino and offset == log.stat().st_size
    assert access_log.last_lines(log, 0)[0] == []


def test_following_goes_on_in_the_new_file_after_caddy_rolls_the_old_one(tmp_path, monkeypatch):
    monkeypatch.setattr(access_log, "POLL_SECONDS", 0)
    log = tmp_path / "app-access.log"
    log.write_text(entry("/before"))
    _, inode, offset = access_log.last_lines(log, 10)
    with log.open("a") as file:
        file.write(entry("/appended") + '{"half": ')  # the rest is not written yet
    seen = [json.loads(line)["request"]["uri"] for line in access_log.follow(log, inode, offset, 2)]
    assert seen == ["/appended"]
    os.rename(log, tmp_path / "app-access-2026-12-02T13-00-00.000.log")  # Caddy's roll
    log.write_text(entry("/after the roll"))
    seen = [json.loads(line)["request"]["uri"] for line in access_log.follow(log, inode, offset, 2)]
    assert seen == ["/after the roll"]


def test_printing_raw_keeps_caddys_json(capsys):
    out = io.StringIO()
    access_log.show([entry("/x")], True, out)
    assert json.loads(out.getvalue())["request"]["uri"] == "/x"


def test_a_missing_log_says_so(tmp_path, capsys):
    assert access_log.main([str(tmp_path / "none.log"), "5"]) == 1
    assert "no access log at" in capsys.readouterr().err


def test_the_agent_command_runs_the_reader_on_the_apps_log(monkeypatch, tmp_path):
    monkeypatch.setattr(commands, "app_paths", lambda name: AppPaths(name))
    argv, env = commands.logs(["shop", "50", "follow", "access", "json"])
    assert argv[-5:] == ["onebox_agent.access_log", str(AppPaths("shop").access_log), "50",
                         "follow", "json"]  # fmt: skip
    assert env["PYTHONPATH"].endswith("agent")
    with pytest.raises(commands.Refused):
        commands.logs(["shop", "50", "access", "raw"])

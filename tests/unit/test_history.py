"""The audit trail: one line per operation, never a secret value."""

from __future__ import annotations

import json
import time

from onebox.agent import entry_script, history
from onebox.agent.requests import EnvSetRequest, HistoryRequest, RollbackRequest, StatusRequest

from .factories import deploy_request


def test_each_operation_is_one_line_and_secret_values_stay_out(tmp_path, monkeypatch):
    monkeypatch.setattr(entry_script, "HISTORY", str(tmp_path))
    started = time.time()
    request = EnvSetRequest(
        app="shop", by="ada@laptop", login="deploy", values={"API_TOKEN": "sk_live_4242"}
    )
    history.record(request, 0, started, {"changed": ["API_TOKEN"]}, "")
    deploy = deploy_request(app="shop", by="ada@laptop", login="root")
    history.record(deploy, 1, started, None, "migrate failed (exit 1)")
    history.record(
        StatusRequest(app="shop", address="a", health_path="/"), 0, started, {}, ""
    )  # not audited
    text = (tmp_path / "shop.history.jsonl").read_text()
    assert "sk_live_4242" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(e["action"], e["result"], e["detail"]) for e in lines] == [
        ("env-set", "ok", "set API_TOKEN"),
        ("deploy", "failed", "migrate failed (exit 1)"),
    ]
    assert lines[0]["login"] == "deploy" and lines[1]["exit"] == 1
    assert (tmp_path / "shop.history.jsonl").stat().st_mode & 0o777 == 0o600
    read = history.read(HistoryRequest(app="shop", lines=1))["entries"]
    assert [e["action"] for e in read] == ["deploy"]


def test_details_name_what_changed():
    rollback = RollbackRequest(
        address="a",
        health_path="/",
        manage="manage.py",
        drain=30,
        release=None,
        force=False,
        restore_db=False,
    )
    assert history.describe(rollback, {"release": "b", "previous": "a"}) == "a -> b"
    restored = {"restored": {"restored": "20261126-0315", "safety_backup": "x"}}
    assert history.describe(rollback, restored) == "restored 20261126-0315"
    assert history.describe(deploy_request(), {"release": "r1"}) == "release r1"


def test_the_entry_writes_the_start_before_the_shipped_agent_runs(tmp_path, monkeypatch):
    """The agent a client ships could skip its own history line: the start of each
    operation is written by the installed entry before it hands over, and an operation
    whose outcome never came stays in the history as "started"."""
    monkeypatch.setattr(entry_script, "HISTORY", str(tmp_path))
    monkeypatch.setenv("SUDO_USER", "onebox")
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"action": "deploy", "app": "shop", "by": "ada@laptop", "run": "r1"})
    )
    entry_script.started(str(request))
    request.write_text(
        json.dumps({"action": "env-list", "app": "shop", "reveal": True, "run": "r2"})
    )
    entry_script.started(str(request))
    request.write_text(json.dumps({"action": "status", "app": "shop", "run": "r3"}))
    entry_script.started(str(request))  # (reads nothing that leaves: not recorded)
    request.write_text(
        json.dumps({"action": "deploy", "app": "shop", "dry_run": True, "run": "r4"})
    )
    entry_script.started(str(request))  # (changes nothing)
    lines = [
        json.loads(line) for line in (tmp_path / "shop.history.jsonl").read_text().splitlines()
    ]
    assert [(e["action"], e["result"], e["login"]) for e in lines] == [
        ("deploy", "started", "onebox"),
        ("env-list", "started", "onebox"),
    ]
    # the deploy's outcome comes in: its start line goes; the reveal's never came, it stays
    finished = deploy_request(app="shop", by="ada@laptop", login="onebox", run="r1")
    history.record(finished, 0, time.time(), {"release": "x"}, "")
    entries = history.read(HistoryRequest(app="shop", lines=10))["entries"]
    assert [(e["action"], e["result"]) for e in entries] == [
        ("env-list", "started"),
        ("deploy", "ok"),
    ]
    assert entries[0]["detail"] == "secret values shown"


def test_commands_that_take_data_off_the_server_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(entry_script, "HISTORY", str(tmp_path))
    history.ran("shop", "manage", "createsuperuser")
    history.ran("shop", "dump", "backup part abc123")
    entries = history.read(HistoryRequest(app="shop", lines=10))["entries"]
    assert [(e["action"], e["detail"]) for e in entries] == [
        ("manage", "createsuperuser"),
        ("dump", "backup part abc123"),
    ]

"""The audit trail: one line per operation, never a secret value."""

from __future__ import annotations

import json
import time

from onebox.agent import history
from onebox.agent.requests import EnvSetRequest, HistoryRequest, RollbackRequest, StatusRequest

from .factories import deploy_request


def test_each_operation_is_one_line_and_secret_values_stay_out(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "HISTORY", tmp_path)
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
        release=None,
        force=False,
        restore_db=False,
    )
    assert history.describe(rollback, {"release": "b", "previous": "a"}) == "a -> b"
    restored = {"restored": {"restored": "20261126-0315", "safety_backup": "x"}}
    assert history.describe(rollback, restored) == "restored 20261126-0315"
    assert history.describe(deploy_request(), {"release": "r1"}) == "release r1"

"""Plans from facts, without a server: what a step would change (facts in, changes out)."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

from onebox.agent import cutover, deploy_plan, plan
from onebox.agent.plan import Change
from onebox.agent.steps import Step, plan_steps


def test_a_file_plan_is_its_diff_and_nothing_when_it_is_already_so(tmp_path):
    path = tmp_path / "onebox-shop@.service"
    [new] = plan.file_change(path, "a\nb\n")
    assert new.kind == "file" and new.diff.startswith("--- /dev/null\n+++ ")
    path.write_text("a\nb\n")
    path.chmod(0o644)
    assert plan.file_change(path, "a\nb\n", mode=0o644) == []
    assert plan.file_change(path, "a\nb\n", mode=0o600) == [Change("file", str(path), "mode 600")]
    [changed] = plan.file_change(path, "a\nc\n")
    assert "-b\n+c\n" in changed.diff


def test_a_secret_file_is_planned_without_its_content(tmp_path):
    [change] = plan.file_change(tmp_path / "shop.env", 'SECRET_KEY="s3cr3t"\n')
    assert "s3cr3t" not in change.diff and change.diff == "(secret: content not shown)"


def test_packages_are_the_missing_ones_and_one_apt_command(monkeypatch):
    monkeypatch.setattr(plan, "missing_packages", lambda names: [n for n in names if n != "curl"])
    changes = plan.package_changes(["curl", "libpq-dev", "gcc"])
    assert [c.target for c in changes if c.kind == "package"] == ["libpq-dev", "gcc"]
    command = shlex.split(changes[-1].target)
    assert command[:2] == ["apt-get", "install"] and command[-2:] == ["libpq-dev", "gcc"]
    monkeypatch.setattr(plan, "missing_packages", lambda names: [])
    assert plan.package_changes(["curl"]) == []


def test_the_units_plan_shows_the_workers_change_and_the_reload(tmp_path):
    unit, tmpfiles = tmp_path / "onebox-shop@.service", tmp_path / "onebox-shop.conf"
    unit.write_text("ExecStart=gunicorn --workers 2\n")
    tmpfiles.write_text("d /run/onebox-shop\n")
    unit.chmod(0o644)
    tmpfiles.chmod(0o644)
    d = SimpleNamespace(
        paths=SimpleNamespace(unit_template=unit, tmpfiles=tmpfiles),
        request=SimpleNamespace(
            files={"unit": "ExecStart=gunicorn --workers 3\n", "tmpfiles": "d /run/onebox-shop\n"}
        ),
    )
    changes = deploy_plan.units(d)  # type: ignore[arg-type]
    assert [c.kind for c in changes] == ["file", "command"]
    assert "-ExecStart=gunicorn --workers 2\n+ExecStart=gunicorn --workers 3\n" in changes[0].diff
    assert changes[1].target == "systemctl daemon-reload"


def test_the_cutover_plan_names_the_slots():
    c = SimpleNamespace(
        old="blue",
        new="green",
        release_dir=Path("/srv/shop/releases/r2"),
        paths=SimpleNamespace(unit=lambda slot: f"onebox-shop@{slot}.service"),
        keeps=(False, ""),
    )
    assert cutover.plan_start(c)[0].target == "start onebox-shop@green.service"  # type: ignore[arg-type]
    assert cutover.plan_switch(c)[0].target == "blue slot -> green slot (r2)"  # type: ignore[arg-type]
    assert cutover.plan_retire(c) == [Change("unit", "stop onebox-shop@blue.service")]  # type: ignore[arg-type]
    c.old = None  # a first deploy: nothing to stop
    assert cutover.plan_retire(c) == []  # type: ignore[arg-type]


def test_a_plan_predicts_the_status_each_step_will_report():
    facts = {"venv": True}
    pipeline = [
        Step("virtualenv", lambda c: False, idempotent=True,
             plan=lambda c: [] if c["venv"] else [Change("virtualenv", "/srv/shop/venvs/x")]),
        Step("health check", lambda c: None),  # reports "changed" whenever it runs
        Step("database", lambda c: False, idempotent=True),  # no plan: told when it runs
        Step("migrate", lambda c: False, idempotent=True,
             plan=lambda c: [Change("unknown", "pending migrations")]),
        Step("skipped", lambda c: None, when=lambda c: False),
        Step("prune", lambda c: None, quiet=True, plan=lambda c: [Change("directory", "r1")]),
    ]  # fmt: skip
    planned = plan_steps(pipeline, facts)
    assert [(p.name, p.changed) for p in planned] == [
        ("virtualenv", False),
        ("health check", True),
        ("database", None),
        ("migrate", None),
        ("prune", False),  # (quiet: no event; its changes are still shown)
    ]
    facts["venv"] = False
    assert plan_steps(pipeline, facts)[0].changed is True


def test_a_kept_standby_is_planned_as_kept_not_stopped():
    c = SimpleNamespace(
        old="blue",
        new="green",
        paths=SimpleNamespace(unit=lambda slot: f"onebox-shop@{slot}.service"),
        keeps=(True, "81 MiB; 900 MiB of 2048 MiB free"),
    )
    assert cutover.plan_retire(c) == [  # type: ignore[arg-type]
        Change("unit", "keep onebox-shop@blue.service running (the standby)")
    ]

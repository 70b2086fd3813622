"""The step runner: events, a failed step named, undos last first, notes in step order."""

import json
from dataclasses import dataclass, field

import pytest

from onebox.agent import protocol
from onebox.agent.protocol import AgentError
from onebox.agent.steps import Done, Each, Step, run_steps


@dataclass
class Log:
    done: list[str] = field(default_factory=list)


def events(capsys) -> list[tuple[str, str]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [(e["name"], e["status"]) for e in lines if e["event"] == "step"]


def fail(log: Log) -> None:
    raise AgentError("it broke")


def test_a_failing_step_is_reported_failed_and_the_begun_ones_are_undone(capsys):
    log = Log()
    pipeline = [
        Step("one", lambda c: c.done.append("one"), undo=lambda c: c.done.append("undo one")),
        Step("two", lambda c: True, undo=lambda c: c.done.append("undo two") or "; two back"),
        Step("skipped", lambda c: None, when=lambda c: False, undo=lambda c: "; never"),
        Step("three", fail, undo=lambda c: c.done.append("undo three") or "; three back"),
        Step("four", lambda c: c.done.append("four")),
    ]
    with pytest.raises(AgentError) as raised:
        run_steps(pipeline, log)
    assert log.done == ["one", "undo three", "undo two", "undo one"]  # last first
    assert raised.value.message == "it broke; two back; three back"  # in step order
    assert events(capsys) == [
        ("one", "start"),
        ("one", "changed"),
        ("two", "start"),
        ("two", "changed"),
        ("three", "start"),
        ("three", "failed"),
    ]


def test_nothing_before_a_final_step_is_undone_after_it():
    log = Log()
    pipeline = [
        Step("switch", lambda c: None, undo=lambda c: c.done.append("undo switch")),
        Step("stop old", lambda c: None, final=True),
        Step("later", fail),
    ]
    with pytest.raises(AgentError):
        run_steps(pipeline, log)
    assert log.done == []


def test_an_undo_that_fails_is_named_and_the_first_error_is_kept():
    def broken_undo(c):
        raise AgentError("could not stop it")

    pipeline = [Step("start", lambda c: None, undo=broken_undo), Step("check", fail)]
    with pytest.raises(AgentError) as raised:
        run_steps(pipeline, Log())
    assert raised.value.message == "it broke; putting back 'start' failed too: could not stop it"


def test_outcomes_shown_names_and_each(capsys):
    log = Log()
    pipeline = [
        Step("same", lambda c: False),
        Step("noted", lambda c: Done(changed=True, detail="3 files")),
        Step("start", lambda c: None, shown=lambda c: "start (green slot)"),
        Each("build", lambda c: ["npm ci", "make"], lambda c, item: c.done.append(item)),
    ]
    run_steps(pipeline, log)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ended = [(e["name"], e["status"], e["detail"]) for e in lines if e["status"] != "start"]
    assert ended == [
        ("same", "unchanged", ""),
        ("noted", "changed", "3 files"),
        ("start (green slot)", "changed", ""),
        ("build: npm ci", "changed", ""),
        ("build: make", "changed", ""),
    ]
    assert log.done == ["npm ci", "make"]


def test_each_tolerating_failures_goes_on_and_passes_them(capsys):
    failed = []

    def hook(c, command):
        if command == "false":
            raise AgentError("hook `false` failed")

    pipeline = [
        Each("after switch", lambda c: ["false", "true"], hook,
             tolerate=lambda c, item, exc: failed.append(item)),
    ]  # fmt: skip
    run_steps(pipeline, Log())
    assert failed == ["false"]
    assert ("after switch: false", "failed") in events(capsys)


def test_a_cancel_before_a_step_undoes_what_began(monkeypatch):
    log = Log()

    def cancelled():
        if log.done:
            raise AgentError("the deploy was cancelled")

    monkeypatch.setattr(protocol, "before_step", [cancelled])
    pipeline = [
        Step("unpack", lambda c: c.done.append("unpack"), undo=lambda c: c.done.append("discard")),
        Step("build", lambda c: c.done.append("build")),
    ]
    with pytest.raises(AgentError, match="cancelled"):
        run_steps(pipeline, log)
    assert log.done == ["unpack", "discard"]

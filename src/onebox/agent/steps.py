"""Setup, deploy and rollback as lists of named steps over a context object.

Each list reads top to bottom as what the command does (see deploy.py). A step reports
its start and end (protocol.step); when one fails, the steps begun so far are undone in
reverse order (stop the new slot, traffic back, the half-built release removed), and
what each undo did is added to the error, in the order of the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .plan import Change
from .protocol import AgentError, emit, step

C = TypeVar("C", contravariant=True)  # a step for any Cutover serves a Deploy


@dataclass(frozen=True)
class Done:
    """What a step reports beyond "done": whether it changed anything, and a detail."""

    changed: bool | None = None
    detail: str = ""


Outcome = Done | bool | str | None  # a bool is `changed`, a str a detail


@dataclass(frozen=True)
class Planned:
    """A step of a dry run: its name as it will be shown, and what it would change."""

    name: str
    step: str  # its name in the list (without what only the run knows)
    # the run will report it "changed" (a quiet step reports nothing); None: a step
    # that can tell only when it runs (a database's users, say)
    changed: bool | None
    changes: list[Change]


@dataclass(frozen=True)
class Step(Generic[C]):
    """One named step. `when` skips it (no event); `shown` names it with what only the
    run knows ("start (green slot)"); `undo` puts back what it did when a later step
    fails, and returns a note for the error ("; traffic is back on release ...")."""

    name: str
    action: Callable[[C], Outcome]
    when: Callable[[C], bool] | None = None
    shown: Callable[[C], str] | None = None
    undo: Callable[[C], str | None] | None = None
    quiet: bool = False  # reports steps of its own (the background move)
    final: bool = False  # once done, nothing before it is undone (the old slot is stopped)
    # For a dry run: what it would change, from facts (it may note facts in the context
    # for the steps after it, as its action would). Without one, it changes nothing.
    plan: Callable[[C], list[Change]] | None = None
    # It reports "unchanged" when it had nothing to do (so a dry run can predict that);
    # the others report "changed" whenever they run.
    idempotent: bool = False

    def runs(self, context: C) -> bool:
        return self.when is None or self.when(context)

    def preview(self, context: C) -> list[Planned]:
        changes = self.plan(context) if self.plan else []
        name = self.shown(context) if self.shown else self.name
        if self.quiet:
            return [Planned(name, self.name, False, changes)]
        if self.plan is None and self.idempotent:
            return [Planned(name, self.name, None, changes)]  # told only when it runs
        if self.idempotent and any(change.kind == "unknown" for change in changes):
            return [Planned(name, self.name, None, changes)]
        real = any(change.kind not in ("note", "unknown") for change in changes)
        return [Planned(name, self.name, real or not self.idempotent, changes)]

    def perform(self, context: C) -> None:
        if self.quiet:
            self.action(context)
            return
        with step(self.shown(context) if self.shown else self.name) as state:
            outcome = self.action(context)
            if isinstance(outcome, Done):
                state["changed"], state["detail"] = outcome.changed, outcome.detail
            elif isinstance(outcome, bool):
                state["changed"] = outcome
            elif isinstance(outcome, str):
                state["detail"] = outcome


@dataclass(frozen=True)
class Each(Generic[C]):
    """One step per item (each build command is a step "build: COMMAND"). With
    `tolerate`, a failing item is reported as a warning and passed to it, and the run
    goes on (hooks after the switch change nothing that could be undone)."""

    name: str
    items: Callable[[C], Iterable[str]]
    action: Callable[[C, str], object]
    tolerate: Callable[[C, str, AgentError], None] | None = None
    when: Callable[[C], bool] | None = None
    undo = None

    def runs(self, context: C) -> bool:
        return self.when is None or self.when(context)

    def preview(self, context: C) -> list[Planned]:
        return [
            Planned(f"{self.name}: {item}", self.name, True, [Change("command", item)])
            for item in self.items(context)
        ]

    def perform(self, context: C) -> None:
        for item in self.items(context):
            try:
                with step(f"{self.name}: {item}"):
                    self.action(context, item)
            except AgentError as exc:
                if self.tolerate is None:
                    raise
                emit("log", text=f"warning: {exc.message}; the new release serves all the same")
                self.tolerate(context, item, exc)


Pipeline = Sequence[Step[C] | Each[C]]


def names(pipeline: Pipeline[Any]) -> list[str]:
    """The steps' names, in order (tests kill a deploy after each of them)."""
    return [entry.name for entry in pipeline]


def plan_steps(pipeline: Pipeline[C], context: C) -> list[Planned]:
    """The dry run: each step that would run, with what it would change; nothing runs."""
    return [
        planned for entry in pipeline if entry.runs(context) for planned in entry.preview(context)
    ]


def run_steps(pipeline: Pipeline[C], context: C) -> None:
    """Each step in turn; on a failure (or a cancel, or SIGTERM), the undos of the steps
    begun, last first, then the error goes on with their notes."""
    begun: list[Step[C] | Each[C]] = []
    try:
        for entry in pipeline:
            if entry.runs(context):
                begun.append(entry)  # before it runs: a step that fails half-way is undone too
                entry.perform(context)
                if isinstance(entry, Step) and entry.final:
                    begun.clear()
    except BaseException as exc:
        notes = undo(begun, context)
        if isinstance(exc, AgentError):
            exc.message += "".join(notes)
        raise


def undo(begun: list[Step[C] | Each[C]], context: C) -> list[str]:
    notes: dict[int, str] = {}
    for index in reversed(range(len(begun))):
        entry = begun[index]
        if entry.undo is None:
            continue
        try:
            note = entry.undo(context)
        except Exception as exc:  # the error that started the undo is the one to report
            message = exc.message if isinstance(exc, AgentError) else repr(exc)
            note = f"; putting back {entry.name!r} failed too: {message}"
        if note:
            notes[index] = note
    return [notes[index] for index in sorted(notes)]

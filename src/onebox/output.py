"""What the user sees: progress for humans, one JSON document for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.status import Status

from onebox.errors import OneboxError

# how a step that ended is shown: its mark, and what follows its name
MARKS = {
    "changed": ("[green]✓[/]", ""),
    "unchanged": ("[dim]·[/]", " [dim](unchanged)[/]"),
    "failed": ("[bold red]✗[/]", " [red]failed[/]"),
}


class HumanReporter:
    """Prints each step as it ends, with a spinner while it runs."""

    def __init__(self, verbose: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        # piped: tables as wide as their rows (a script reads whole lines), not 80 columns
        self.out = Console(
            highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 4096
        )
        self.verbose = verbose
        self._status: Status | None = None

    def event(self, event: dict[str, object]) -> None:
        kind = event.get("event")
        if kind == "step" and event.get("status") == "start":
            self._spin(f"{escape(str(event['name']))}…")  # user text (a build command)
        elif kind == "step":
            self._stop()
            mark, changed = MARKS.get(str(event["status"]), MARKS["unchanged"])
            detail = escape(str(event.get("detail") or ""))
            # (a failed step's detail is the error, printed in full below)
            verbose = self.verbose and event["status"] != "failed"
            detail = f" [dim]{detail}[/]" if detail and verbose else ""
            self.console.print(
                f" {mark} {escape(str(event['name']))}{changed} [dim]{event['seconds']}s[/]{detail}"
            )
        elif kind == "log":
            self._stop()
            self.console.print(f"   {event['text']}", markup=False)

    def notice(self, message: str) -> None:
        self._stop()
        self.console.print(f"[yellow]![/] {escape(message)}")

    def log(self, message: str) -> None:
        self._stop()
        self.console.print(message, markup=False)

    def _spin(self, text: str) -> None:
        if not self.console.is_terminal:
            return
        self._stop()
        self._status = self.console.status(text)
        self._status.start()

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def result(self, view: str | RenderableType) -> None:
        """Text (as it is: never read as markup), or a table (of plain-text cells)."""
        self._stop()
        self.out.print(view, markup=False)

    def error(self, error: OneboxError) -> None:
        self._stop()
        self.console.print(f"[bold red]error:[/] {escape(error.message)}")
        if error.host:
            self.console.print(f"  [dim]host:[/] {escape(error.host)}")
        if error.command:
            self.console.print(f"  [dim]command:[/] {escape(error.command)}")
        if error.output:
            self.console.print("  [dim]output:[/]")
            for line in error.output.rstrip().splitlines()[-30:]:
                self.console.print(f"    {line}", markup=False)
        if error.hint:
            self.console.print(f"[bold]what to do:[/] {escape(error.hint)}")


class JsonReporter:
    """Collects events; prints one JSON object on stdout at the end."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.notices: list[str] = []

    def event(self, event: dict[str, object]) -> None:
        if event.get("event") == "step" and event.get("status") == "start":
            return
        self.events.append(event)

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def log(self, message: str) -> None:
        self.notices.append(message)

    def emit(self, data: Any, ok: bool = True) -> None:
        document = {"ok": ok, **({"result": data} if ok else {"error": data})}
        if self.events:
            document["steps"] = self.events
        if self.notices:
            document["notices"] = self.notices
        json.dump(document, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")

    def error(self, error: OneboxError) -> None:
        self.emit(error.as_dict(), ok=False)

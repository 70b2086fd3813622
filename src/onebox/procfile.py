"""A Procfile (Heroku's, Dokku's, Piku's) read as [processes], when onebox.toml has none.

`worker: celery -A proj worker` becomes the process `worker`. The `web:` line is left out
(onebox runs the web app itself, behind its own proxy) and `release:` becomes a release
command (run after migrate, before the release gets traffic). A Procfile's commands are
shell lines, so one that uses the shell (`&&`, `$VAR`) runs through `sh -c`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from onebox.config import PROCESS_NAME, RESERVED_NAMES, ProcessConfig, split_command
from onebox.errors import ConfigError

PROCFILE = "Procfile"
LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


@dataclass
class Procfile:
    processes: dict[str, ProcessConfig] = field(default_factory=dict)
    release: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read(root: Path) -> Procfile | None:
    path = root / PROCFILE
    if not path.is_file():
        return None
    found = Procfile()
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if not match:
            raise ConfigError(
                f"{path}:{number}: {line!r} is not a Procfile line",
                hint='each line is "name: command", like "worker: celery -A proj worker"',
            )
        name, command = match.group(1).lower().replace("_", "-"), match.group(2).strip()
        if name == "web":
            found.notes.append(
                f"{PROCFILE}: the web line is not used: onebox serves the app itself "
                "(gunicorn behind Caddy, [app] wsgi)"
            )
        elif name == "release" and re.search(r"manage\.py\s+migrate\b", command):
            found.notes.append(f"{PROCFILE}: release line {command!r} left out: onebox migrates "
                               "every release itself (with a backup first)")  # fmt: skip
        elif name == "release":
            found.release.append(command)
        else:
            found.processes[name] = _process(path, number, name, command)
    if found.processes:
        found.notes.append(
            f"processes from {PROCFILE}: {', '.join(found.processes)} (a [processes] table in "
            "onebox.toml would take its place)"
        )
    return found


def _process(path: Path, number: int, name: str, command: str) -> ProcessConfig:
    if not PROCESS_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise ConfigError(
            f"{path}:{number}: {name!r} cannot name a process here",
            hint="use lowercase letters, digits and dashes, and none of "
            + ", ".join(sorted(RESERVED_NAMES)),
        )
    try:
        split_command(command)
        if "$" in command:
            raise ValueError("uses a variable")
    except ValueError:
        command = shlex.join(["sh", "-c", command])  # a shell line, as Heroku runs it
    try:
        return ProcessConfig(command=command)
    except ValidationError as exc:
        raise ConfigError(
            f"{path}:{number}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
            hint="fix that line of the Procfile",
        ) from None

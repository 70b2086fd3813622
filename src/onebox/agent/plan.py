"""What a step would change, read from the server as it is (facts -> changes).

A dry run (`onebox setup --dry-run`, `onebox deploy --dry-run`) asks each step for its
changes instead of running it (see steps.plan_steps): files with their diff, packages,
commands (as argv, shown with shlex.join), units started and stopped, migrations.
Nothing here writes anything.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .system import missing_packages, run

SECRET_SUFFIXES = (".env", ".key", "secrets")  # whose content a plan never shows


@dataclass(frozen=True)
class Change:
    # file, package, command, unit, migration, directory, traffic, backup, virtualenv; a
    # "note" changes nothing; "unknown": what the step does is known only when it runs
    kind: str
    target: str  # the path, package, argv or unit
    diff: str = ""  # a file's unified diff, or a line of detail


def file_change(
    path: Path, new: str, *, mode: int | None = None, secret: bool = False
) -> list[Change]:
    """The file as it would be written (system.write_file): nothing if it is already so."""
    old = path.read_text(errors="replace") if path.is_file() else None
    if old == new:
        found = path.stat().st_mode & 0o7777
        return (
            [] if mode is None or found == mode else [Change("file", str(path), f"mode {mode:o}")]
        )
    if secret or path.name.endswith(SECRET_SUFFIXES):
        return [Change("file", str(path), "(secret: content not shown)")]
    diff = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=str(path) if old is not None else "/dev/null",
        tofile=str(path),
    )
    return [Change("file", str(path), "".join(diff))]


def files_change(files: dict[Path, str], mode: int | None = 0o644) -> list[Change]:
    return [change for path, new in files.items() for change in file_change(path, new, mode=mode)]


def enable_changes(units: Sequence[str], now: bool = True) -> list[Change]:
    """`systemctl enable` for those not enabled yet."""
    off = [
        u
        for u in units
        if run(["systemctl", "is-enabled", u], check=False).stdout.strip() != "enabled"
    ]
    return [command(["systemctl", "enable", *(["--now"] if now else []), u]) for u in off]


def package_changes(packages: Sequence[str]) -> list[Change]:
    missing = missing_packages(packages)
    if not missing:
        return []
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    return [*(Change("package", name) for name in missing), command(install)]


def command(argv: Sequence[str]) -> Change:
    return Change("command", shlex.join(argv))


def missing_dirs(paths: Sequence[Path]) -> list[Change]:
    return [Change("directory", str(p)) for p in paths if not p.is_dir()]

"""Which files of the project make a release, and what identifies it."""

from __future__ import annotations

import fnmatch
import getpass
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ALWAYS_EXCLUDED = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    "env",
    "node_modules",
    "__pycache__",
    "*.pyc",
    ".onebox/cache",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    "*.sqlite3",
    ".env",
    ".env.*",
    "onebox.toml",
)


LARGE = 10 * 1024 * 1024  # an untracked file this big is likely a dump or a build, not code


@dataclass(frozen=True)
class Bundle:
    root: Path
    files: list[Path]
    commit: str  # git commit, "+dirty" when the work tree differs, "" outside git
    large_untracked: tuple[tuple[str, int], ...] = ()  # (path, bytes), shipped all the same

    @property
    def size(self) -> int:
        return sum((self.root / f).stat().st_size for f in self.files if (self.root / f).is_file())


def collect(root: Path, exclude: list[str]) -> Bundle:
    patterns = (*ALWAYS_EXCLUDED, *exclude)
    candidates = _git_files(root)
    untracked = _git_files(root, tracked=False) or []
    if candidates is None:
        candidates = [p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink()]
        untracked = candidates
    files = sorted(p for p in candidates if not _excluded(p, patterns) and (root / p).exists())
    shipped = set(files)
    large = tuple(
        (p.as_posix(), size)
        for p in sorted(untracked)
        if p in shipped and (root / p).is_file() and (size := (root / p).stat().st_size) >= LARGE
    )
    return Bundle(root=root, files=files, commit=_commit(root), large_untracked=large)


def _excluded(path: Path, patterns: tuple[str, ...]) -> bool:
    parts = path.parts
    text = path.as_posix()
    for pattern in patterns:
        if "/" in pattern.strip("/"):
            if text == pattern or text.startswith(pattern.rstrip("/") + "/"):
                return True
        elif any(fnmatch.fnmatch(part, pattern.strip("/")) for part in parts):
            return True
    return False


def _git_files(root: Path, tracked: bool = True) -> list[Path] | None:
    """Tracked and untracked-but-not-ignored files: what the developer sees as the project
    (tracked=False: the untracked ones alone)."""
    which = ["--cached", "--others"] if tracked else ["--others"]
    result = subprocess.run(
        ["git", "ls-files", "-z", *which, "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return [Path(name) for name in result.stdout.decode().split("\0") if name]


def _commit(root: Path) -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return ""
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=False
    ).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def release_id() -> str:
    """Sortable and unique per deploy (UTC time to the millisecond)."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"


def deployer() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"

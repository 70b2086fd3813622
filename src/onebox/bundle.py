"""Which files of the project make a release, and what identifies it."""

from __future__ import annotations

import fnmatch
import getpass
import socket
import subprocess
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
    "onebox.toml",
)
# Files that look like secrets: never shipped unless [build] include names them, and a
# deploy says which it left out.
SECRET_LOOKING = (".env", ".env.*", ".envs", "*.pem", "*.key")


LARGE = 10 * 1024 * 1024  # an untracked file this big is likely a dump or a build, not code


@dataclass(frozen=True)
class Bundle:
    root: Path
    files: list[Path]
    commit: str  # git commit, "+dirty" when the work tree differs, "" outside git
    large_untracked: tuple[tuple[str, int], ...] = ()  # (path, bytes), shipped all the same
    secrets_left_out: tuple[str, ...] = ()  # secret-looking files not shipped
    exclude: tuple[str, ...] = ()  # [build] exclude, to say why a file is not shipped

    @property
    def size(self) -> int:
        return sum((self.root / f).stat().st_size for f in self.files if (self.root / f).is_file())


def collect(root: Path, exclude: list[str], include: list[str] | None = None) -> Bundle:
    """The files git shows as the project (tracked, and untracked but not ignored), less
    what is excluded and what looks like a secret; plus what [build] include names, even
    if git ignores it (a git-ignored production settings file, compiled assets)."""
    patterns = (*ALWAYS_EXCLUDED, *exclude)
    candidates = _git_files(root)
    untracked = _git_files(root, tracked=False) or []
    if candidates is None:
        candidates = [p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink()]
        untracked = candidates
    present = [p for p in candidates if not _excluded(p, patterns) and (root / p).exists()]
    secret = sorted(p for p in present if _excluded(p, SECRET_LOOKING))
    included = _included(root, include or [], patterns)
    files = sorted((set(present) - set(secret)) | included)
    shipped = set(files)
    large = tuple(
        (p.as_posix(), size)
        for p in sorted(untracked)
        if p in shipped and (root / p).is_file() and (size := (root / p).stat().st_size) >= LARGE
    )
    left_out = tuple(p.as_posix() for p in secret if p not in included)
    return Bundle(root, files, _commit(root), large, left_out, tuple(exclude))


def _included(root: Path, include: list[str], patterns: tuple[str, ...]) -> set[Path]:
    """Files under each [build] include path or glob (never .git, .venv and the like)."""
    found: set[Path] = set()
    for pattern in include:
        for match in root.glob(pattern.strip("/")):
            paths = match.rglob("*") if match.is_dir() else [match]
            for path in paths:
                relative = path.relative_to(root)
                if (path.is_file() or path.is_symlink()) and not _excluded(relative, patterns):
                    found.add(relative)
    return found


def why_left_out(bundle: Bundle, path: Path) -> str:
    """Why a file of the working tree is not in the release, in the words of its cause."""
    root = bundle.root
    rule = subprocess.run(
        ["git", "check-ignore", "--verbose", "--no-index", str(path)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if rule.returncode == 0 and rule.stdout.strip():
        source = rule.stdout.split("\t")[0]  # ".gitignore:12:settings/production.py"
        return f"git ignores it ({source})"
    if _excluded(path, SECRET_LOOKING):
        return "it looks like a secret (.env, *.pem, *.key are never shipped unless included)"
    for pattern in bundle.exclude:
        if _excluded(path, (pattern,)):
            return f'[build] exclude leaves it out ("{pattern}")'
    return "onebox always leaves it out (caches, virtualenvs, *.sqlite3, onebox.toml)"


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


def deployer() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"

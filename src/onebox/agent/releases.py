"""The kept releases: their ids (in deploy order), `onebox releases`, and pruning.

A release is complete once frozen (its `.onebox/complete` file); only complete releases
count toward [deploy] keep, are listed, and can be rolled back to (see rollback.py).
"""

from __future__ import annotations

import calendar
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .env_refs import REFS_FILE
from .paths import AppPaths
from .requests import Request
from .switch import live_slot
from .system import read_env_file
from .venv import prune_venvs

COMPLETE = ".onebox/complete"

RELEASE_ID = re.compile(r"\d{8}-\d{6}-\d{3}")


def complete_releases(paths: AppPaths) -> list[Path]:
    if not paths.releases.is_dir():
        return []
    return sorted(p for p in paths.releases.iterdir() if (p / COMPLETE).is_file())


def live_release(paths: AppPaths) -> str | None:
    return paths.current.resolve().name if paths.current.is_symlink() else None


def manifest(release: Path) -> dict:
    path = release / ".onebox" / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"release_id": release.name}


def list_releases(request: Request) -> dict[str, Any]:
    paths = AppPaths(request.app)
    live = live_release(paths)
    releases = [{**manifest(p), "live": p.name == live} for p in complete_releases(paths)]
    return {"releases": releases, "live": live, "slot": live_slot(paths)}


def new_release_id(paths: AppPaths, now: float | None = None) -> str:
    """Release ids sort in deploy order, so they come from the server's clock (a client
    whose clock is behind would make its release the oldest), and always after the
    newest release there, should the server's own clock have gone back."""
    now = time.time() if now is None else now
    wanted = _stamp(now)
    existing = [p.name for p in paths.releases.iterdir()] if paths.releases.is_dir() else []
    newest = max((name for name in existing if RELEASE_ID.fullmatch(name)), default="")
    if wanted > newest:
        return wanted
    parsed = time.strptime(newest[:15], "%Y%m%d-%H%M%S")
    return _stamp(calendar.timegm(parsed) + int(newest[16:]) / 1000 + 0.001)


def _stamp(moment: float) -> str:
    millis = round(moment * 1000)
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(millis // 1000)) + f"-{millis % 1000:03d}"


def discard(paths: AppPaths, release_dir: Path) -> None:
    """A failed release never counts toward the kept ones and never stays half-built."""
    current = paths.current.resolve() if paths.current.is_symlink() else None
    if release_dir.exists() and release_dir.resolve() != current:
        shutil.rmtree(release_dir, ignore_errors=True)


def prune(paths: AppPaths, keep: int) -> list[str]:
    live = {paths.current.resolve()} if paths.current.is_symlink() else set()
    for slot in ("blue", "green"):
        if paths.slot_link(slot).is_symlink():
            live.add(paths.slot_link(slot).resolve())
    releases = sorted(p for p in paths.releases.iterdir() if p.is_dir())
    complete = complete_releases(paths)
    removed = []
    for path in releases:
        if path in live:
            continue
        if path not in complete or path not in complete[-keep:]:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    prune_venvs(paths)
    return removed


def release_env(paths: AppPaths, release: Path) -> dict[str, str]:
    return {
        **read_env_file(release / ".onebox" / "release.env"),
        **read_env_file(release / REFS_FILE),
        **read_env_file(paths.secrets),
    }

"""Servers known to have no deploy user yet (before their first `onebox setup`).

Until setup makes the deploy user, every onebox command would first try it, be refused,
and fall back to root. Those refusals are failed logins in the server's journal, which
the fail2ban that setup installs reads back: four `env set` before a setup were enough
to get the user's own machine banned. So the first refusal is remembered here, on the
user's machine, and later commands log in as root at once, until setup has made the user.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol


class _Target(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...

    @property
    def name(self) -> str: ...


def _file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "onebox" / "no-deploy-user.json"


def _key(target: _Target) -> str:
    return hashlib.sha256(f"{target.name}|{target.host}|{target.port}".encode()).hexdigest()[:20]


def _read() -> list[str]:
    try:
        return list(json.loads(_file().read_text()))
    except (OSError, ValueError, TypeError):
        return []


def _write(keys: list[str]) -> None:
    path = _file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sorted(set(keys))))
    except OSError:
        pass  # a cache: without it, onebox only tries the deploy user first again


def remembered(target: _Target) -> bool:
    return _key(target) in _read()


def remember(target: _Target) -> None:
    _write([*_read(), _key(target)])


def forget(target: _Target) -> None:
    _write([key for key in _read() if key != _key(target)])

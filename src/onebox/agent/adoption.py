"""Setup's steps for a site `onebox adopt` took over (an [apache] section with its code).

Before onebox changes the site (Apache's vhost, at the first deploy), setup takes what
the site already has: the database password its settings hold goes into the 0600
secrets file (DATABASE_PASSWORD, for backups; the settings file is left as it is), the
uploads in its MEDIA_ROOT are copied into the app's shared media folder (the originals
stay), and a first backup of both is taken.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from . import backup
from .adopt import probe_settings
from .paths import AppPaths
from .protocol import AgentError, ExitCode
from .provision import SECRETS_HEADER
from .system import format_env_file, read_env_file, run, write_file


def old_site(apache: dict[str, Any]) -> dict[str, Any]:
    """The adopted site as adopt.probe_settings reads it."""
    return {
        "code": apache["code"],
        "venv": apache["venv"],
        "python_path": [apache["code"]],
        "user": apache["user"],
        "settings": apache["settings"],
        "problems": [],
    }


def read_old_settings(apache: dict[str, Any], password: bool = False) -> dict[str, Any]:
    site = old_site(apache)
    probed = probe_settings(site, password=password)
    if not probed:
        raise AgentError(
            f"the settings of the adopted site in {apache['code']} could not be read",
            output="\n".join(site["problems"]),
            hint="check [apache] code, venv and settings in onebox.toml (`onebox adopt` "
            "writes them), or take [apache] code out to set the site up without them",
            code=ExitCode.CONFIG,
        )
    return probed


def take_password(paths: AppPaths, apache: dict[str, Any]) -> bool:
    """DATABASE_PASSWORD from the adopted settings, unless the secrets have one."""
    values = read_env_file(paths.secrets)
    if values.get("DATABASE_PASSWORD"):
        return False
    databases = read_old_settings(apache, password=True).get("databases", {})
    password = (databases.get("default") or {}).get("password", "")
    if not password:
        return False
    values["DATABASE_PASSWORD"] = password
    write_file(paths.secrets, format_env_file(values, SECRETS_HEADER), mode=0o600)
    return True


def copy_media(paths: AppPaths, apache: dict[str, Any]) -> bool:
    """The adopted site's uploads, copied into shared/media once (the originals stay)."""
    if any(paths.media.iterdir()):  # copied before (or the app's own uploads since)
        return False  # (and the old site's Python not run again)
    media_root = read_old_settings(apache).get("media_root", "")
    source = Path(media_root) if media_root else None
    if not source or not source.is_dir() or os.path.realpath(source) == str(paths.media):
        return False
    for entry in source.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, paths.media / entry.name, symlinks=True)
        elif entry.is_file() and not entry.is_symlink():
            shutil.copy2(entry, paths.media / entry.name)
    run(["chown", "-R", f"{paths.app}:{paths.app}", str(paths.media)])
    return True


def first_backup(paths: AppPaths, settings: dict[str, Any]) -> bool:
    """A backup of the adopted data, once, before the first deploy changes anything."""
    if backup.read_state(paths).get("last_good_backup"):
        return False
    backup.take(paths, settings, "adopted")
    return True

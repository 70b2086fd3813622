"""`onebox env`: the app's secrets file. Values arrive in the request, never in argv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .paths import AppPaths
from .protocol import AgentError, ExitCode
from .provision import SECRETS_HEADER
from .requests import EnvListRequest, EnvSetRequest, EnvUnsetRequest
from .system import (
    MAX_ENV_FILE,
    ensure_dir,
    env_entry_problem,
    format_env_file,
    read_env_file,
    write_file,
)

BACKUP_HEADER = """Credentials of the off-site backup repository (e.g. AWS_ACCESS_KEY_ID), read by
restic only, never by the app. Mode 0600, owner root. Change with `onebox env set --backup`."""


def _file(request: EnvSetRequest | EnvUnsetRequest | EnvListRequest) -> tuple[Path, str]:
    """The app's secrets file, or (--backup) the backups' credentials file."""
    paths = AppPaths(request.app)
    ensure_dir(paths.secrets.parent, mode=0o700)
    if request.backup:
        return paths.backup_env, BACKUP_HEADER
    return paths.secrets, SECRETS_HEADER


def set_values(request: EnvSetRequest) -> dict[str, Any]:
    path, header = _file(request)
    values = read_env_file(path)
    problems = [env_entry_problem(k, v) for k, v in request.values.items()]
    if any(problems):
        raise AgentError("; ".join(p for p in problems if p), code=ExitCode.CONFIG)
    changed = [key for key, value in request.values.items() if values.get(key) != value]
    values.update(request.values)
    text = format_env_file(values, header)
    if len(text.encode()) > MAX_ENV_FILE:
        raise AgentError(
            f"the secrets would take {len(text.encode())} bytes; onebox keeps them under "
            f"{MAX_ENV_FILE} (all of the app's environment must fit the kernel's ARG_MAX)",
            hint="keep large values in a file (or the database) and put its path here",
            code=ExitCode.CONFIG,
        )
    write_file(path, text, mode=0o600)
    return {"changed": changed, "restart_needed": bool(changed) and not request.backup}


def unset_values(request: EnvUnsetRequest) -> dict[str, Any]:
    path, header = _file(request)
    values = read_env_file(path)
    unknown = [key for key in request.keys if key not in values]
    if unknown:
        raise AgentError(
            f"not set: {', '.join(unknown)}",
            hint="`onebox env list` shows what is",
            code=ExitCode.CONFIG,
        )
    for key in request.keys:
        del values[key]
    write_file(path, format_env_file(values, header), mode=0o600)
    return {"removed": request.keys}


def list_values(request: EnvListRequest) -> dict[str, Any]:
    values = read_env_file(_file(request)[0])
    shown = {key: (value if request.reveal else _mask(value)) for key, value in values.items()}
    return {"values": shown}


def _mask(value: str) -> str:
    return "(empty)" if not value else "*" * 8

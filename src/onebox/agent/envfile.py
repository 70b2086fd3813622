"""`onebox env`: the app's secrets file. Values arrive in the request, never in argv."""

from __future__ import annotations

from .paths import AppPaths
from .protocol import EXIT_CONFIG, AgentError
from .provision import SECRETS_HEADER
from .system import ensure_dir, format_env_file, read_env_file, write_file


def _paths(request: dict) -> AppPaths:
    paths = AppPaths(request["app"])
    ensure_dir(paths.secrets.parent, mode=0o700)
    return paths


def set_values(request: dict) -> dict[str, object]:
    paths = _paths(request)
    values = read_env_file(paths.secrets)
    changed = [key for key, value in request["values"].items() if values.get(key) != value]
    values.update(request["values"])
    write_file(paths.secrets, format_env_file(values, SECRETS_HEADER), mode=0o600)
    return {"changed": changed, "restart_needed": bool(changed)}


def unset_values(request: dict) -> dict[str, object]:
    paths = _paths(request)
    values = read_env_file(paths.secrets)
    unknown = [key for key in request["keys"] if key not in values]
    if unknown:
        raise AgentError(
            f"not set: {', '.join(unknown)}",
            hint="`onebox env list` shows what is",
            code=EXIT_CONFIG,
        )
    for key in request["keys"]:
        del values[key]
    write_file(paths.secrets, format_env_file(values, SECRETS_HEADER), mode=0o600)
    return {"removed": request["keys"]}


def list_values(request: dict) -> dict[str, object]:
    values = read_env_file(AppPaths(request["app"]).secrets)
    shown = {
        key: (value if request.get("reveal") else _mask(value)) for key, value in values.items()
    }
    return {"values": shown}


def _mask(value: str) -> str:
    return "(empty)" if not value else "*" * 8

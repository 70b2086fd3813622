"""Agent requests for unit tests, with what onebox.toml would give them by default."""

from __future__ import annotations

from typing import Any

from onebox.agent.requests import DeployRequest


def deploy_request(**values: Any) -> DeployRequest:
    defaults: dict[str, Any] = {
        "app": "shop", "address": "shop.test", "health_path": "/", "manage": "manage.py",
        "drain": 30, "commit": None, "settings": "shop.settings", "collectstatic": True,
        "build": [],
        "before_migrate": [], "release": [], "after_switch": [], "env": {}, "secrets": [],
        "lock": "", "lock_hash": "abc", "python": None, "python_mirror": "", "packages": [],
        "files": {}, "engine": "sqlite", "keep": 5, "probation": 3, "security_skip": {},
        "switches": {}, "allow_breaking": False, "redis": None, "background": {},
        "standby": "auto",
        "serving": {"workers": None, "threads": None, "worker_class": None, "asgi": False},
        "media": {"storage": "local", "bucket": "", "endpoint": "", "region": ""},
    }  # fmt: skip
    return DeployRequest(**{**defaults, **values})

"""The agent's part of a rolling deploy once its hosts have switched (or failed to):
[deploy] after_switch, once, on the first web host, when every web host serves the new
release (a deploy to one host runs them itself, after its switch; as there, a failing
hook is reported and changes nothing); and, after a roll that stopped, the release a
host built and started beside its live one, stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .django import Release
from .lock import deploy_lock, roll_guard
from .paths import SLOTS, AppPaths
from .protocol import AgentError, ExitCode
from .releases import RELEASE_ID, live_release, release_env
from .requests import AfterSwitchRequest, DiscardHeldRequest
from .standby import record, serves
from .steps import Each, run_steps
from .system import run


@dataclass
class Hooks:
    release: Release
    commands: list[str]
    failed: list[str] = field(default_factory=list)


def run_hook(h: Hooks, command: str) -> None:
    h.release.shell(command, f"after-switch command `{command}`")


def hook_failed(h: Hooks, command: str, error: AgentError) -> None:
    h.failed.append(command)


AFTER_SWITCH = [Each("after switch", lambda h: h.commands, run_hook, tolerate=hook_failed)]


def after_switch(request: AfterSwitchRequest) -> dict[str, Any]:
    paths = AppPaths(request.app)
    with roll_guard(paths.roll_lock, request.roll), deploy_lock(paths.lock, request.by, "hooks"):
        live = live_release(paths)
        if live != request.release:  # (a roll's lock keeps others out: a bug, or a hand)
            raise AgentError(
                f"release {request.release} does not serve here (release {live} does): "
                "the after_switch hooks did not run",
                hint="run them by hand with `onebox run`, if they are still wanted",
                code=ExitCode.CONFIG,
            )
        target = paths.current.resolve()
        hooks = Hooks(Release(paths.app, target, release_env(paths, target), request.manage),
                      request.commands)  # fmt: skip
        run_steps(AFTER_SWITCH, hooks)
    return {"hooks_failed": hooks.failed}


def discard_held(request: DiscardHeldRequest) -> dict[str, Any]:
    """The held release stopped, where it runs on a slot that does not serve: its
    memory back, the host as before the roll (its standby aside: the held release took
    the standby's slot). Its folder stays, as a failed deploy's would not: it is a
    complete release, which `releases` lists and a rollback may choose."""
    paths = AppPaths(request.app)
    if not RELEASE_ID.fullmatch(request.release):
        raise AgentError(f"{request.release!r} is not a release id", code=ExitCode.CONFIG)
    with roll_guard(paths.roll_lock, request.roll), deploy_lock(paths.lock, request.by, "stop"):
        live = paths.current.resolve() if paths.current.is_symlink() else None
        held = paths.releases / request.release
        for slot in SLOTS:
            if held != live and serves(paths, slot, held):
                run(["systemctl", "stop", paths.unit(slot)], check=False)
                record(paths, False, f"the rolling deploy of release {request.release} stopped")
                return {"stopped": slot}
    return {"stopped": None}

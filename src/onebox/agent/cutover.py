"""Moving the site onto a release, for deploy and rollback alike.

STARTUP starts the release in the idle slot beside the live one; only once it is healthy
does anything the live release uses change: the Caddy site (if the settings' URLs moved).
TRAFFIC moves traffic, keeps the old release running through a probation ([deploy]
probation seconds; rollbacks skip it), moves the processes and schedules, and only then
stops the old slot. Until that last step a failure puts everything back (the undos).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import apache_site, background, cancel, later, site_check, standby
from .django import hint_for
from .drain import drained
from .paths import AppPaths
from .plan import Change, command, file_change
from .protocol import AgentError, emit
from .provision import ensure_access_log, install_caddy_config
from .requests import SwitchRequest
from .steps import Step
from .switch import (
    check_pages,
    idle_slot,
    journal,
    keep_standby,
    live_slot,
    retire_later,
    route_to,
    start_slot,
    wait_healthy,
    wait_unused,
    watch,
)
from .system import ensure_symlink, run


@dataclass(kw_only=True)
class Cutover:
    """What a move onto `release_dir` knows and what it did, for its undos."""

    request: SwitchRequest
    paths: AppPaths
    release_dir: Path
    site: str = ""  # the release's site: Caddy's, or Apache's include (apache_site.py)
    apache: bool = False  # Apache is in front ([server] proxy = "apache")
    old: str | None = None  # the live slot, and what it serves
    old_release: Path | None = None
    new: str = ""
    old_site: str | None = None
    previous_background: Path | None = None
    routed: bool = False  # traffic is on the new slot
    background_undone: str | None = None  # how the processes went back (for the error)
    moved: dict[str, object] = field(default_factory=dict)
    window: ExitStack = field(default_factory=ExitStack)  # the maintenance page, if held
    # [deploy] standby (True, False, "auto"): the old release stays up after the move, for
    # a rollback that only switches (standby.py). None: rollbacks, which keep none.
    standby: bool | str | None = None
    warm: bool = False  # the release already runs on the idle slot (the standby)
    asgi: bool = False  # served as ASGI (websockets): no standby
    keeps: tuple[bool, str] | None = None  # the old release kept as the standby, and why

    def __post_init__(self) -> None:
        paths = self.paths
        self.old, self.new = live_slot(paths), idle_slot(paths)
        self.old_release = paths.slot_link(self.old).resolve() if self.old else None
        self.warm = standby.serves(paths, self.new, self.release_dir)
        self.apache = apache_site.in_front(paths)
        site = paths.apache_site if self.apache else paths.caddy_site
        self.old_site = site.read_text() if site.is_file() else None
        self.previous_background = background.current_release(paths)

    @property
    def can_go_back(self) -> bool:
        return bool(self.old and self.old_release and self.old_release.is_dir())

    def new_background(self) -> dict[str, Any]:
        """What the release runs in the background (a deploy's comes with its request)."""
        return background.spec(self.release_dir)


# What each step would change (a dry run: see plan.py).


def plan_start_caddy(c: Cutover) -> list[Change]:
    return [command(["systemctl", "start", site_check.proxy_unit(c.paths)])]


def plan_start(c: Cutover) -> list[Change]:
    return [Change("unit", f"start {c.paths.unit(c.new)}", f"release {c.release_dir.name}")]


def plan_caddy_site(c: Cutover) -> list[Change]:
    if not c.site:
        return [Change("unknown", "the site: known once the settings are read")]
    if c.apache:
        return apache_site.plan(c.paths, c.site)
    return file_change(c.paths.caddy_site, c.site)


def plan_switch(c: Cutover) -> list[Change]:
    return [Change("traffic", f"{c.old or 'no'} slot -> {c.new} slot ({c.release_dir.name})")]


def plan_processes(c: Cutover) -> list[Change]:
    old, new = background.installed(c.paths), c.new_background()
    changes = [
        change
        for name, text in (new.get("units") or {}).items()
        if isinstance(text, str)  # (a kept release's spec lists the names only)
        for change in file_change(background.UNIT_DIR / name, text)
    ]
    if old["processes"]:
        changes.append(Change("unit", f"stop processes {', '.join(old['processes'])}"))
    if new.get("processes"):
        changes.append(Change("unit", f"start processes {', '.join(new['processes'])}"))
    return changes


def plan_retire(c: Cutover) -> list[Change]:
    if not c.old or c.old == c.new:
        return []
    if keeps_standby(c):
        return [Change("unit", f"keep {c.paths.unit(c.old)} running (the standby)")]
    return [Change("unit", f"stop {c.paths.unit(c.old)}")]


def start_caddy(c: Cutover) -> None:
    unit = site_check.proxy_unit(c.paths)
    run(["systemctl", "start", unit], what=f"starting {unit}")


def start_new(c: Cutover) -> str | None:
    if c.warm:
        return f"release {c.release_dir.name} runs already: the standby"
    start_slot(c.paths, c.new, c.release_dir)
    return None


def stop_new(c: Cutover) -> None:
    # (serving, with nothing to go back to: it stays; the standby stays the standby)
    if not c.routed and not c.warm:
        run(["systemctl", "stop", c.paths.unit(c.new)], check=False, timeout=120)


def health_check(c: Cutover) -> str:
    request = c.request
    wait_healthy(c.paths, c.new, request.address, request.health_path)
    pages = request.health_pages or {}
    check_pages(c.paths, c.new, request.address, pages)
    return ", ".join([request.health_path, *pages.get("paths", [])])


def caddy_site(c: Cutover) -> bool:
    if not c.apache:
        ensure_access_log(c.paths)  # (a server set up before Caddy kept it)
        if c.old_site and c.old_site != c.site and "@draining" in c.old_site:
            with drained(c.paths):  # (a reload closes idle kept-alive connections)
                return install_caddy_config(c.paths.caddy_site, c.site)
        return install_caddy_config(c.paths.caddy_site, c.site)
    if not c.paths.live_socket.exists():
        # Apache serves the adopted site until this reload: from then on, through the
        # live socket, which must already lead to the healthy new release.
        ensure_symlink(c.paths.live_socket, c.paths.socket(c.new))
    return apache_site.install(c.paths, c.site)


def put_back_site(c: Cutover) -> None:
    if c.routed:
        return
    if not c.apache:
        if c.old_site is not None:
            install_caddy_config(c.paths.caddy_site, c.old_site)
    elif c.old_site is not None:
        apache_site.install(c.paths, c.old_site)
    else:  # the first deploy: mod_wsgi serves the adopted site again
        apache_site.restore_vhost(c.paths)


def switch_traffic(c: Cutover) -> None:
    cancel.commit()  # the point of no return: past this, `onebox cancel` is refused
    route_to(c.paths, c.new, c.release_dir)
    c.routed = True
    emit("log", text=f"traffic now goes to release {c.release_dir.name} ({c.new} slot)")


def route_back(c: Cutover) -> str | None:
    """Traffic back on the old slot, the new one stopped; the note names where it went."""
    if not c.routed or not c.can_go_back:
        return c.background_undone
    assert c.old and c.old_release
    route_to(c.paths, c.old, c.old_release)
    wait_unused(c.paths, c.new)
    run(["systemctl", "stop", c.paths.unit(c.new)], check=False, timeout=120)
    # The new slot, restarted by systemd, may have re-linked live.sock in between
    # (its ExecStartPost): point it back once more, now that nothing can.
    route_to(c.paths, c.old, c.old_release)
    c.routed = False
    emit("log", text=f"traffic is back on release {c.old_release.name} ({c.old} slot)")
    if c.background_undone is None:
        return f"; traffic is back on release {c.old_release.name}"
    return f"; web traffic is back on release {c.old_release.name}{c.background_undone}"


def probation_seconds(c: Cutover) -> float:
    return c.request.probation


def on_probation(c: Cutover) -> bool:
    return bool(probation_seconds(c)) and c.can_go_back


def probation(c: Cutover) -> None:
    request = c.request
    problem = watch(c.paths, c.new, request.address, request.health_path, probation_seconds(c))
    if problem:
        output = journal(c.paths, c.new)  # before the undo stops it
        raise AgentError(f"the new release {problem}", output=output, hint=hint_for(output))


def move_background(c: Cutover) -> None:
    c.moved = background.move(c.paths, c.release_dir, probation_seconds(c))


def background_back(c: Cutover) -> None:
    """The previous release's processes again (or none, if it had none)."""
    previous = c.previous_background
    if not previous or previous == c.release_dir:
        background.stop_all(c.paths)
        c.background_undone = ""
        return
    try:
        background.move(c.paths, previous, 0)
        c.background_undone = ", and the processes too"
    except AgentError as again:
        c.background_undone = f"; the previous processes did not start either: {again.message}"


def keeps_standby(c: Cutover) -> bool:
    """Whether the old release stays up as the standby (decided once, after probation:
    from the memory free with both releases running)."""
    if c.keeps is None:
        if not c.old or c.old == c.new or c.standby is None:
            c.keeps = (False, "")
        elif c.standby is False:
            c.keeps = (False, "[deploy] standby = false")
        else:
            c.keeps = standby.decide(c.paths, c.standby, c.old, asgi=c.asgi)
    return c.keeps[0]


def retire_old(c: Cutover) -> str | None:
    if keeps_standby(c):
        assert c.old and c.old_release and c.keeps
        old, new = c.old, c.new
        if not later.after_answer(
            lambda: keep_standby(c.paths, old, new), c.paths.lock, "keeping the standby", 30
        ):
            keep_standby(c.paths, old, new)
        standby.record(c.paths, True, c.keeps[1])
        emit(
            "log",
            text=f"release {c.old_release.name} stays up as the standby ({c.old} slot, "
            f"{c.keeps[1]}): `onebox rollback` only switches to it",
        )
        return None
    retire_later(c.paths, c.old, c.new, c.request.drain)
    if c.keeps and c.keeps[1]:
        standby.record(c.paths, False, c.keeps[1])
        emit("log", text=f"no standby: {c.keeps[1]}")
        return None
    if c.old and c.old != c.new and c.old_release:  # (a rollback: the release it left stops)
        standby.record(c.paths, False, f"the rollback stopped release {c.old_release.name}")
    return None


STARTUP: list[Step[Cutover]] = [
    Step(
        "start the proxy (it was not running)",  # stopped by hand, or crashed: no visitor gets in
        start_caddy,
        shown=lambda c: f"start {site_check.proxy_name(c.paths)} (it was not running)",
        when=lambda c: not site_check.proxy_active(c.paths),
        plan=plan_start_caddy,
    ),
    Step(
        "start",
        start_new,
        shown=lambda c: f"{'standby' if c.warm else 'start'} ({c.new} slot)",
        undo=stop_new,
        plan=plan_start,
    ),
    Step("health check", health_check),
    Step(
        "caddy site",
        caddy_site,
        shown=lambda c: "apache site" if c.apache else "caddy site",
        undo=put_back_site,
        plan=plan_caddy_site,
        idempotent=True,
    ),
]

TRAFFIC: list[Step[Cutover]] = [
    Step("switch traffic", switch_traffic, undo=route_back, plan=plan_switch),
    Step(
        "probation",
        probation,
        when=on_probation,
        shown=lambda c: f"probation ({probation_seconds(c)}s, the old release still running)",
    ),
    # processes and schedules, once the web side passed probation (see background.py)
    Step("processes", move_background, quiet=True, undo=background_back, plan=plan_processes),
    Step(
        "stop old release",
        retire_old,
        shown=lambda c: "keep the standby" if keeps_standby(c) else "stop old release",
        final=True,
        plan=plan_retire,
    ),
]

"""The server's protections that `onebox setup` owns, as setup steps.

Each one is idempotent and can be skipped in onebox.toml with a reason
([security] skip). The ones that could cut the user off (the firewall, sshd) come last
and are guarded: the client must confirm them over a new SSH connection (guard.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import baseline, bruteforce, firewall, guard, ssh_access, updates
from .plan import Change

Planner = Callable[[Any], list[Change]]
Step = tuple[str, Callable[[Any], bool], Planner]  # (name, action, plan) for setup.py


def packages(security: dict) -> list[str]:
    """Installed with the rest of setup's packages, in one apt run."""
    skip = security.get("skip", {})
    wanted = ["nftables"]
    if "fail2ban" not in skip:
        wanted += bruteforce.PACKAGES
    if "updates" not in skip:
        wanted += updates.PACKAGES
    if "system" not in skip:
        wanted += baseline.PACKAGES
    return wanted


def steps(
    app: str, security: dict, login: str, debian: str, notes: list[str], guarded: list[str]
) -> list[Step]:
    """(name, action, plan) of each protection, for setup.py; a skipped one is left
    alone (and said)."""
    skip = security.get("skip", {})
    guard.set_window(security.get("confirm_within"))

    def unless_skipped(protection: str, change: Callable[..., bool]) -> Callable[[Any], bool]:
        def step(context: Any) -> bool:
            if protection in skip:
                notes.append(f"{protection} left alone: {skip[protection]}")
                return False
            return change()

        return step

    def plan_unless_skipped(protection: str, plan: Callable[[], list[Change]]) -> Planner:
        def planned(context: Any) -> list[Change]:
            if protection in skip:
                return [Change("note", f"{protection} left alone: {skip[protection]}")]
            return plan()

        return planned

    def guarded_change(name: str, change: Callable[[], tuple[bool, bool]]) -> Callable[[Any], bool]:
        def step(context: Any = None) -> bool:
            changed, armed = change()
            if armed:
                guarded.append(name)
            return changed

        return step

    reboot_at = security.get("reboot_at", "")
    sudo = security.get("deploy_sudo", "agent")
    return [
        (
            "system baseline",
            unless_skipped("system", baseline.ensure),
            plan_unless_skipped("system", baseline.plan),
        ),
        (
            "brute-force banning",
            unless_skipped("fail2ban", bruteforce.ensure),
            plan_unless_skipped("fail2ban", bruteforce.plan),
        ),
        (
            "security updates",
            unless_skipped("updates", lambda: updates.ensure(reboot_at)),
            plan_unless_skipped("updates", lambda: updates.plan(reboot_at)),
        ),
        (
            "firewall",
            guarded_change("firewall", lambda: firewall.configure(app, security)),
            lambda context: firewall.plan(app, security),
        ),
        (
            "ssh access",
            unless_skipped(
                "ssh", guarded_change("ssh", lambda: ssh_access.ensure(login, debian, sudo))
            ),
            plan_unless_skipped("ssh", lambda: ssh_access.plan(login, debian, sudo)),
        ),
    ]

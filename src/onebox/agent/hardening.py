"""The server's protections that `onebox setup` owns, as setup steps.

Each one is idempotent and can be skipped in onebox.toml with a reason
([security] skip). The ones that could cut the user off (the firewall, sshd) come last
and are guarded: the client must confirm them over a new SSH connection (guard.py).
"""

from __future__ import annotations

from collections.abc import Callable

from . import baseline, bruteforce, firewall, guard, ssh_access, updates

Step = tuple[str, Callable[[], bool]]


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
    skip = security.get("skip", {})
    guard.set_window(security.get("confirm_within"))

    def unless_skipped(protection: str, change: Callable[[], bool]) -> Callable[[], bool]:
        def step() -> bool:
            if protection in skip:
                notes.append(f"{protection} left alone: {skip[protection]}")
                return False
            return change()

        return step

    def guarded_change(name: str, change: Callable[[], tuple[bool, bool]]) -> Callable[[], bool]:
        def step() -> bool:
            changed, armed = change()
            if armed:
                guarded.append(name)
            return changed

        return step

    reboot_at = security.get("reboot_at", "")
    sudo = security.get("deploy_sudo", "agent")
    return [
        ("system baseline", unless_skipped("system", baseline.ensure)),
        ("brute-force banning", unless_skipped("fail2ban", bruteforce.ensure)),
        ("security updates", unless_skipped("updates", lambda: updates.ensure(reboot_at))),
        ("firewall", guarded_change("firewall", lambda: firewall.configure(app, security))),
        (
            "ssh access",
            unless_skipped(
                "ssh", guarded_change("ssh", lambda: ssh_access.ensure(login, debian, sudo))
            ),
        ),
    ]

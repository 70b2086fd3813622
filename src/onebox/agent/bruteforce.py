"""Brute-force banning: fail2ban's sshd jail, reading the journal.

Debian 12 and 13 log sshd to the journal only (there is no auth.log), so the jail needs
`backend = systemd` (and python3-systemd). Bans go into nftables, in fail2ban's own
table; onebox's firewall table accepts SSH, fail2ban's drops the banned addresses.
"""

from __future__ import annotations

import time
from pathlib import Path

from .firewall import ssh_ports
from .protocol import AgentError
from .system import apt_install, run, write_file

JAIL = Path("/etc/fail2ban/jail.d/onebox.local")
# Where fail2ban wants local changes (jail.conf is the package's): made if missing, never
# overwritten, so that your own settings have their place.
JAIL_LOCAL = Path("/etc/fail2ban/jail.local")
JAIL_LOCAL_TEXT = """\
# Your own fail2ban settings go here (jail.conf is replaced by package updates).
# onebox's sshd jail is in jail.d/onebox.local.
"""
PACKAGES = ["fail2ban", "python3-systemd", "netbase"]  # netbase: /etc/services

JAIL_TEMPLATE = """\
# Written by `onebox setup`: ban addresses that keep failing to log in over SSH.
# [security] skip = { fail2ban = "why" } in onebox.toml: setup leaves fail2ban alone.
[DEFAULT]
banaction = nftables-multiport
banaction_allports = nftables-allports

[sshd]
enabled = true
# the ports sshd listens on, as numbers (a name needs /etc/services)
port = {ports}
backend = systemd
# normal: failed logins and unknown users. Not the "ddos" lines: a port scan or a health
# probe that opens and closes the SSH port (onebox audit does) must not ban its user.
mode = normal
maxretry = 5
findtime = 10m
bantime = 1h
"""


def ensure() -> bool:
    changed = bool(apt_install(PACKAGES))
    ports = ",".join(map(str, ssh_ports()))
    changed |= write_file(JAIL, JAIL_TEMPLATE.replace("{ports}", ports), mode=0o644)
    if not JAIL_LOCAL.exists():
        changed |= write_file(JAIL_LOCAL, JAIL_LOCAL_TEXT, mode=0o644)
    if changed or not active():
        run(["systemctl", "enable", "--quiet", "fail2ban"], check=False)
        run(["systemctl", "restart", "fail2ban"], what="restarting fail2ban")
        wait_for_jail()
    return changed


def active() -> bool:
    return run(["systemctl", "is-active", "fail2ban"], check=False).stdout.strip() == "active"


def wait_for_jail(timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(["fail2ban-client", "status", "sshd"], check=False).returncode == 0:
            return
        time.sleep(0.5)
    status = run(["systemctl", "status", "--no-pager", "fail2ban"], check=False)
    raise AgentError("fail2ban's sshd jail did not start", output=status.stdout[-2000:])


def remove() -> bool:
    if not JAIL.exists():
        return False
    JAIL.unlink()
    if active():
        run(["systemctl", "restart", "fail2ban"], check=False)
    return True

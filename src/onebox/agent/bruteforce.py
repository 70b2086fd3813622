"""Brute-force banning: fail2ban's sshd jail and its onebox-django jail, both reading
the journal.

Debian 12 and 13 log sshd to the journal only (there is no auth.log), so the jails need
`backend = systemd` (and python3-systemd). Each failed Django login (the admin's, or any
login through `django.contrib.auth`) is reported to the journal as `onebox-auth` by the
app's WSGI wrapper (wsgi_health.py), with the client's address. Bans go into nftables,
in fail2ban's own table: onebox's firewall accepts SSH and HTTP(S), fail2ban's table
drops the banned addresses (from SSH for the sshd jail, from HTTP(S) for the other).
"""

from __future__ import annotations

import time
from pathlib import Path

from .firewall import ssh_ports
from .plan import Change, command, files_change, package_changes
from .protocol import AgentError
from .system import apt_install, run, write_file

JAIL = Path("/etc/fail2ban/jail.d/onebox.local")
# Where fail2ban wants local changes (jail.conf is the package's): made if missing, never
# overwritten, so that your own settings have their place.
JAIL_LOCAL = Path("/etc/fail2ban/jail.local")
JAIL_LOCAL_TEXT = """\
# Your own fail2ban settings go here (jail.conf is replaced by package updates).
# onebox's jails are in jail.d/onebox.local.
"""
PACKAGES = ["fail2ban", "python3-systemd", "netbase"]  # netbase: /etc/services

JAIL_TEMPLATE = """\
# Written by `onebox setup`: ban addresses that keep failing to log in (SSH, Django).
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

[onebox-django]
# failed Django logins (reported by onebox's WSGI wrapper as onebox-auth): an address
# failing 10 times in 10 minutes loses HTTP and HTTPS for an hour, not SSH.
enabled = true
backend = systemd
filter = onebox-django
action = %(banaction)s[port="80,443", protocol="tcp"]
         %(banaction)s[actname=onebox-django-quic, port="443", protocol="udp"]
maxretry = 10
findtime = 10m
bantime = 1h
"""

FILTER = Path("/etc/fail2ban/filter.d/onebox-django.conf")
FILTER_TEXT = """\
# Written by `onebox setup`: failed Django logins, as onebox's WSGI wrapper reports them.
[INCLUDES]
before = common.conf

[Definition]
_daemon = onebox-auth
failregex = ^%(__prefix_line)sfailed login from <HOST>$
journalmatch = SYSLOG_IDENTIFIER=onebox-auth
"""
JAILS = ("sshd", "onebox-django")


def plan() -> list[Change]:
    ports = ",".join(map(str, ssh_ports()))
    files = {FILTER: FILTER_TEXT, JAIL: JAIL_TEMPLATE.replace("{ports}", ports)}
    if not JAIL_LOCAL.exists():
        files[JAIL_LOCAL] = JAIL_LOCAL_TEXT
    changes = package_changes(PACKAGES) + files_change(files)
    if changes or not active():
        changes.append(command(["systemctl", "restart", "fail2ban"]))
    return changes


def ensure() -> bool:
    changed = bool(apt_install(PACKAGES))
    ports = ",".join(map(str, ssh_ports()))
    changed |= write_file(FILTER, FILTER_TEXT, mode=0o644)
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
    waiting = list(JAILS)
    while waiting and time.monotonic() < deadline:
        if run(["fail2ban-client", "status", waiting[0]], check=False).returncode == 0:
            waiting.pop(0)
        else:
            time.sleep(0.5)
    if waiting:
        status = run(["systemctl", "status", "--no-pager", "fail2ban"], check=False)
        raise AgentError(
            f"fail2ban's {waiting[0]} jail did not start", output=status.stdout[-2000:]
        )

"""Security updates, installed by themselves: unattended-upgrades (Debian's security
archive only, as Debian configures it), with automatic reboots off unless
[security] reboot_at names an hour. What still runs old code after an update is shown,
not restarted behind the app's back: `needrestart` lists services using replaced
libraries, and /run/reboot-required says a new kernel waits for a reboot.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from .paths import UNIT_DIR
from .plan import Change, enable_changes, files_change, package_changes
from .system import APT_ENV, APT_WAIT, apt_install, run, write_file

PERIODIC = Path("/etc/apt/apt.conf.d/20auto-upgrades")
POLICY = Path("/etc/apt/apt.conf.d/52onebox-unattended-upgrades")
NEEDRESTART = Path("/etc/needrestart/conf.d/onebox.conf")
PACKAGES = ["unattended-upgrades", "needrestart"]
SHUTDOWN_GUARD = UNIT_DIR / "unattended-upgrades.service.d" / "onebox.conf"
REBOOT_REQUIRED = Path("/run/reboot-required")

PERIODIC_TEXT = """\
// Written by `onebox setup`: refresh the package lists and install security updates daily.
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
"""


def policy_text(reboot_at: str) -> str:
    lines = [
        "// Written by `onebox setup` ([security] reboot_at in onebox.toml).",
        'Unattended-Upgrade::Remove-Unused-Kernel-Packages "true";',
        'Unattended-Upgrade::Remove-Unused-Dependencies "true";',
    ]
    if reboot_at:
        lines += [
            'Unattended-Upgrade::Automatic-Reboot "true";',
            'Unattended-Upgrade::Automatic-Reboot-WithUsers "true";',
            f'Unattended-Upgrade::Automatic-Reboot-Time "{reboot_at}";',
        ]
    else:
        lines.append('Unattended-Upgrade::Automatic-Reboot "false";')
    return "\n".join(lines) + "\n"


# needrestart: list, never restart by itself (a restart of the app or its database is a
# deploy's or the user's decision, not an apt hook's).
NEEDRESTART_TEXT = """\
# Written by `onebox setup`: list services that use replaced libraries; restart none.
$nrconf{restart} = 'l';
$nrconf{kernelhints} = 0;
"""


# Debian's unattended-upgrades.service keeps a Python process (unattended-upgrade-shutdown
# --wait-for-signal, 20 MiB of the server's memory, polling logind every few seconds
# without python3-gi) waiting all day for the shutdown, to stop an upgrade in progress
# between two packages. The same helper runs here only when the unit stops, at shutdown:
# before apt-daily-upgrade.service is stopped (units stop in the reverse of After=), and
# then the unit waits until the upgrade has let go of its lock, which Debian's helper does
# not do without python3-gi.
SHUTDOWN_GUARD_TEXT = """\
# Written by `onebox setup`: at shutdown, stop an unattended upgrade between two packages
# and wait for it, with no process waiting all day for the shutdown.
[Unit]
After=apt-daily-upgrade.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=
ExecStart=/bin/true
ExecStop=/usr/share/unattended-upgrades/unattended-upgrade-shutdown
ExecStop=/usr/bin/python3 -c "import fcntl, os; fcntl.lockf(os.open( \\
    '/run/unattended-upgrades.lock', os.O_RDWR | os.O_CREAT, 0o640), fcntl.LOCK_EX)"
"""


def plan(reboot_at: str) -> list[Change]:
    files = {
        PERIODIC: PERIODIC_TEXT,
        POLICY: policy_text(reboot_at),
        NEEDRESTART: NEEDRESTART_TEXT,
        SHUTDOWN_GUARD: SHUTDOWN_GUARD_TEXT,
    }
    timers = ["apt-daily.timer", "apt-daily-upgrade.timer"]
    return package_changes(PACKAGES) + files_change(files) + enable_changes(timers)


def ensure(reboot_at: str) -> bool:
    changed = bool(apt_install(PACKAGES))
    changed |= write_file(PERIODIC, PERIODIC_TEXT, mode=0o644)
    changed |= write_file(POLICY, policy_text(reboot_at), mode=0o644)
    changed |= write_file(NEEDRESTART, NEEDRESTART_TEXT, mode=0o644)
    changed |= ensure_shutdown_guard()
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        if run(["systemctl", "is-enabled", timer], check=False).stdout.strip() != "enabled":
            run(["systemctl", "enable", "--now", "--quiet", timer], check=False)
            changed = True
    return changed


def ensure_shutdown_guard() -> bool:
    SHUTDOWN_GUARD.parent.mkdir(parents=True, exist_ok=True)
    if not write_file(SHUTDOWN_GUARD, SHUTDOWN_GUARD_TEXT, mode=0o644):
        return False
    run(["systemctl", "daemon-reload"])
    # (as the package's own upgrade does: the old helper, stopping, stops an upgrade in
    # progress between two packages; the daily run finishes it)
    run(["systemctl", "try-restart", "unattended-upgrades"], check=False)
    return True


def install_waiting(notes: list[str]) -> bool:
    """Install now what unattended-upgrades would install within a day: a server that
    onebox just set up starts with every security update Debian has published. Setup
    does it before installing its packages, so the services it starts run patched code."""
    waiting = pending_security_updates()
    if not waiting:
        return False
    # The packages Debian's security archive has newer versions of, and only those; your
    # changed config files are kept. An update that fails is named (the daily run retries).
    run(
        [
            "apt-get",
            *APT_WAIT,
            "install",
            "-y",
            "-qq",
            "--only-upgrade",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            *waiting,
        ],
        env=APT_ENV,
        check=False,
        timeout=1800,
    )
    left = pending_security_updates()
    installed = [name for name in waiting if name not in left]
    if installed:
        notes.append(f"installed {_count(installed)}: {', '.join(installed)}")
    if left:
        notes.append(
            f"{_count(left)} did not install ({', '.join(left)}): "
            "they install by themselves within a day, or run `apt-get upgrade` on the server"
        )
    return bool(installed)


def _count(packages: list[str]) -> str:
    return f"{len(packages)} security update{'' if len(packages) == 1 else 's'}"


# What may restart under a running app without it noticing. Not the database, Caddy, the
# app, sshd or dbus: those wait for a deploy, the user, or a reboot (status shows them).
SAFE_TO_RESTART = (
    "systemd-journald.service",
    "cron.service",
    "fail2ban.service",
    "unattended-upgrades.service",
)


def restart_safe_services() -> None:
    stale = state()["outdated_services"]
    if "systemd-manager" in stale:
        run(["systemctl", "daemon-reexec"], check=False)
    for unit in SAFE_TO_RESTART:
        if unit in stale:
            run(["systemctl", "try-restart", unit], check=False)


def pending_security_updates() -> list[str]:
    """Packages with a newer version in Debian's security archive (apt's current lists)."""
    out = run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"], check=False).stdout
    return sorted({m.group(1) for m in re.finditer(r"^Inst (\S+) .*-[Ss]ecurity", out, re.M)})


def state() -> dict[str, Any]:
    """For `onebox status` and `onebox audit`: enabled, reboot pending, stale services."""
    enabled = PERIODIC.is_file() and 'Unattended-Upgrade "1"' in PERIODIC.read_text()
    services: list[str] = []
    kernel_pending = False
    out = ""
    if shutil.which("needrestart"):  # not before setup installed it
        out = run(["needrestart", "-b", "-r", "l"], check=False).stdout
    for line in out.splitlines():
        if line.startswith("NEEDRESTART-SVC:"):
            services.append(line.split(":", 1)[1].strip())
        match = re.match(r"NEEDRESTART-KSTA: (\d)", line)
        if match and match.group(1) in ("2", "3"):
            kernel_pending = True
    return {
        "unattended_upgrades": enabled,
        "reboot_required": REBOOT_REQUIRED.exists() or kernel_pending,
        "outdated_services": services,
    }

"""The system baseline: the small, safe settings a hardened Debian server has, which
Lynis and the CIS benchmarks look for, and none of which the app can notice.

- kernel and network sysctls (no redirects or source routing, reverse-path filtering,
  kernel pointers and dmesg hidden, no core dumps of setuid programs); a container
  refuses some of them, which is fine: the host sets those;
- no core dumps; idle login shells log out after 15 minutes; rare network protocols
  and USB/FireWire storage not loadable;
- a default umask of 027, password ageing and hashing rounds (for accounts that have a
  password at all: onebox's have none);
- a legal banner on the console and for SSH;
- per-session temp dirs (libpam-tmpdir), password strength checks (libpam-pwquality),
  process accounting (acct) and sysstat, package checksums (debsums), apt-listchanges and
  apt-show-versions for patch management;
- compilers (as, gcc, cc, clang) runnable by root only, through dpkg-statoverride so that
  upgrades keep it: an intruder in the app's account cannot build tools on the server,
  while onebox's own builds of C extensions run as root.

Every file it writes is onebox's own; `[security] skip = { system = "why" }` leaves all of
it alone.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .plan import Change, enable_changes, file_change, files_change
from .system import run, write_file

PACKAGES = [
    "libpam-tmpdir",
    "libpam-pwquality",
    "acct",
    "sysstat",
    "debsums",
    "apt-listchanges",
    "apt-show-versions",
]

SYSCTL = Path("/etc/sysctl.d/90-onebox.conf")
SYSCTL_TEXT = """\
# Written by `onebox setup`: a hardened kernel and network baseline.
kernel.kptr_restrict = 2
kernel.dmesg_restrict = 1
kernel.sysrq = 0
kernel.yama.ptrace_scope = 1
kernel.unprivileged_bpf_disabled = 1
net.core.bpf_jit_harden = 2
fs.suid_dumpable = 0
fs.protected_fifos = 2
fs.protected_regular = 2
fs.protected_symlinks = 1
fs.protected_hardlinks = 1
net.ipv4.conf.all.rp_filter = 1
net.ipv4.conf.default.rp_filter = 1
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv4.conf.all.secure_redirects = 0
net.ipv4.conf.default.secure_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.default.send_redirects = 0
net.ipv4.conf.all.accept_source_route = 0
net.ipv4.conf.default.accept_source_route = 0
net.ipv4.conf.all.log_martians = 1
net.ipv4.conf.default.log_martians = 1
net.ipv4.icmp_echo_ignore_broadcasts = 1
net.ipv4.tcp_syncookies = 1
net.ipv6.conf.all.accept_redirects = 0
net.ipv6.conf.default.accept_redirects = 0
net.ipv6.conf.all.accept_source_route = 0
net.ipv6.conf.default.accept_source_route = 0
"""

MODPROBE = Path("/etc/modprobe.d/onebox.conf")
MODPROBE_TEXT = """\
# Written by `onebox setup`: protocols and storage a web server never needs.
install dccp /bin/false
install sctp /bin/false
install rds /bin/false
install tipc /bin/false
install usb-storage /bin/false
install firewire-core /bin/false
install firewire-ohci /bin/false
"""

LIMITS = Path("/etc/security/limits.d/90-onebox.conf")
LIMITS_TEXT = "# Written by `onebox setup`: no core dumps.\n* hard core 0\n* soft core 0\n"
# Core dumps hold memory, and so secrets: none from services (systemd-coredump) or shells.
COREDUMP = Path("/etc/systemd/coredump.conf.d/90-onebox.conf")
COREDUMP_TEXT = """\
# Written by `onebox setup`: no core dumps.
[Coredump]
Storage=none
ProcessSizeMax=0
"""
# Login shells: no core dumps either, and an idle interactive shell logs out after 15
# minutes (CIS 5.4.5); onebox's own commands run no login shell, so this never cuts them.
PROFILE = Path("/etc/profile.d/onebox.sh")
PROFILE_TEXT = """\
# Written by `onebox setup` ([security] skip = { system = "why" } leaves it alone).
ulimit -c 0
TMOUT=900
readonly TMOUT
export TMOUT
"""

COMPILERS = ("as", "cc", "gcc", "clang")

BANNERS = (Path("/etc/issue"), Path("/etc/issue.net"))
BANNER = """\
Authorised access only. Activity on this system is logged and may be monitored.
"""

LOGIN_DEFS = Path("/etc/login.defs")
LOGIN_SETTINGS = {
    "UMASK": "027",
    "PASS_MAX_DAYS": "365",
    "PASS_MIN_DAYS": "1",
    "SHA_CRYPT_MIN_ROUNDS": "100000",
    "SHA_CRYPT_MAX_ROUNDS": "200000",
}


def ensure() -> bool:
    changed = write_file(SYSCTL, SYSCTL_TEXT, mode=0o644)
    if changed:
        # A container refuses some keys (the host owns them): apply what it takes.
        run(["sysctl", "--quiet", "--load", str(SYSCTL)], check=False)
    changed |= write_file(MODPROBE, MODPROBE_TEXT, mode=0o644)
    changed |= write_file(LIMITS, LIMITS_TEXT, mode=0o644)
    changed |= write_file(COREDUMP, COREDUMP_TEXT, mode=0o644)
    changed |= write_file(PROFILE, PROFILE_TEXT, mode=0o644)
    changed |= restrict_compilers()
    for banner in BANNERS:
        changed |= write_file(banner, BANNER, mode=0o644)
    changed |= ensure_login_defs()
    for service in ("acct", "sysstat"):
        enabled = run(["systemctl", "is-enabled", service], check=False).stdout.strip()
        if enabled != "enabled":
            run(["systemctl", "enable", "--now", "--quiet", service], check=False)
            changed = True
    return changed


def plan() -> list[Change]:
    files = {
        SYSCTL: SYSCTL_TEXT,
        MODPROBE: MODPROBE_TEXT,
        LIMITS: LIMITS_TEXT,
        COREDUMP: COREDUMP_TEXT,
        PROFILE: PROFILE_TEXT,
        **dict.fromkeys(BANNERS, BANNER),
    }
    changes = files_change(files)
    login_defs = login_defs_text()
    if login_defs is not None:
        changes += file_change(LOGIN_DEFS, login_defs, mode=0o644)
    changes += [
        Change("file", str(path), "mode 750 (compilers: root only)") for path in open_compilers()
    ]
    return changes + enable_changes(["acct", "sysstat"])


def ensure_login_defs() -> bool:
    new = login_defs_text()
    if new is None or new == LOGIN_DEFS.read_text():
        return False
    return write_file(LOGIN_DEFS, new, mode=0o644)


def login_defs_text() -> str | None:
    """Each key set where it is active (never on a comment that mentions it)."""
    if not LOGIN_DEFS.is_file():
        return None
    text = LOGIN_DEFS.read_text()
    new = text
    for key, value in LOGIN_SETTINGS.items():
        line = f"{key}\t\t{value}"
        pattern = re.compile(rf"^{key}[ \t]+\S.*$", re.MULTILINE)
        if pattern.search(new):
            new = pattern.sub(line, new)
        else:
            new = new.rstrip("\n") + "\n" + line + "\n"
    return new


def open_compilers() -> list[Path]:
    """The compilers (their real files) that anyone may run."""
    found = []
    for name in COMPILERS:
        path = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
        if path and Path(path).resolve().stat().st_mode & 0o001:
            found.append(Path(path).resolve())
    return found


def restrict_compilers() -> bool:
    """Mode 0750 on each compiler found, recorded with dpkg-statoverride (upgrades keep it)."""
    changed = False
    for real in open_compilers():
        # --update applies it now; an override someone else set for the file is kept.
        result = run(
            ["dpkg-statoverride", "--update", "--add", "root", "root", "0750", str(real)],
            check=False,
        )
        changed |= result.returncode == 0
    return changed

"""`onebox audit` on the server: each protection setup owns, checked as it is now.

Every check reads the live state (sshd -T, nft, fail2ban-client, systemd-analyze, the
release's own Django), never onebox's own records of what it did: a protection removed
by hand fails its check. Each result is pass, fail, warn (worth knowing, not a hole) or
skipped (with the reason from [security] skip); a failed one says how to fix it.
"""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import (
    background,
    baseline,
    bruteforce,
    deploy_check,
    firewall,
    isolation,
    public_files,
    redis_server,
    ssh_access,
    updates,
)
from .django import Release
from .isolation import SETUP, Check, result
from .paths import ETC, AppPaths
from .protocol import AgentError, step
from .releases import release_env
from .requests import AuditRequest
from .status import backup_status
from .switch import live_slot
from .system import apt_install, run

EXPOSURE_LIMIT = 2.0
BACKUP_MAX_AGE_HOURS = 26
VERIFY_MAX_AGE_DAYS = 8


def audit(request: AuditRequest) -> dict[str, Any]:
    paths = AppPaths(request.app)
    security = request.security
    skip = security.get("skip", {})
    checks: list[Check] = []
    groups: list[tuple[str, str | None, Callable[[], list[Check]]]] = [
        ("unconfirmed changes", None, isolation.check_guards),
        ("firewall", "firewall", check_firewall),
        ("ssh", "ssh", lambda: check_ssh(security.get("deploy_sudo", "agent"))),
        ("system baseline", "system", check_baseline),
        ("brute-force banning", "fail2ban", check_fail2ban),
        ("security updates", "updates", check_updates),
        ("service sandboxes", None, lambda: check_units(paths)),
        ("secrets", None, lambda: check_secrets(paths)),
        ("what the app can reach", None, lambda: isolation.check_app_isolation(paths)),
        ("what Caddy serves", None, lambda: public_files.check_public_files(paths)),
        ("backups", None, lambda: check_backups(paths)),
        ("redis", None, lambda: check_redis(paths)),
        ("django check --deploy", None, lambda: check_django(paths, request.manage)),
    ]
    if request.lynis:
        groups.append(("lynis", None, check_lynis))
    for title, protection, run_checks in groups:
        with step(f"audit: {title}"):
            if protection in skip:
                checks.append(
                    {"name": title, "status": "skipped", "detail": skip[protection], "fix": ""}
                )
            else:
                checks += run_checks()
    return {"checks": checks, "ssh_ports": firewall.ssh_ports()}


# --------------------------------------------------------------------------- network


def check_firewall() -> list[Check]:
    listed = run(["nft", "list", "table", "inet", "onebox"], check=False)
    active = listed.returncode == 0 and "policy drop" in listed.stdout
    enabled = run(["systemctl", "is-enabled", "nftables"], check=False).stdout.strip()
    boot = (
        firewall.NFTABLES_CONF.is_file() and firewall.INCLUDE in firewall.NFTABLES_CONF.read_text()
    )
    return [
        result(
            "firewall drops what it does not allow",
            active,
            "table inet onebox, input policy drop" if active else "onebox's firewall is not loaded",
            SETUP,
        ),
        result(
            "firewall comes back after a reboot",
            enabled == "enabled" and boot,
            f"nftables.service {enabled}, /etc/nftables.conf includes onebox's rules: {boot}",
            SETUP,
        ),
    ]


# --------------------------------------------------------------------------- ssh


def sshd_settings() -> dict[str, str]:
    out = run(["sshd", "-T"], check=False).stdout
    return dict(line.partition(" ")[::2] for line in out.splitlines() if line)


def check_ssh(deploy_sudo: str = "agent") -> list[Check]:
    found = sshd_settings()
    logins = {
        "permitrootlogin": "no",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
    }
    wrong = [f"{k} {found.get(k, '?')}" for k, v in logins.items() if found.get(k) != v]
    debian = _debian()
    weak = []
    for key, wanted in (
        ("kexalgorithms", ssh_access.KEX.get(debian, "")),
        ("ciphers", ssh_access.CIPHERS),
        ("macs", ssh_access.MACS.get(debian, "")),
    ):
        allowed = set(wanted.split(","))
        weak += [f"{key}: {name}" for name in found.get(key, "").split(",") if name not in allowed]
    sudoers = ssh_access.SUDOERS
    sudo_ok = sudoers.is_file() and sudoers.read_text() == ssh_access.sudoers_text(deploy_sudo)
    sudo_detail = f"{sudoers} is missing or changed"
    if sudo_ok:
        everything = deploy_sudo == "all"
        sudo_detail = (
            f'{sudoers}: anything as root (deploy_sudo = "all")' if everything else str(sudoers)
        )
    return [
        result(
            "ssh: keys only, no root login",
            not wrong,
            "root and password logins are off" if not wrong else ", ".join(wrong),
            SETUP,
        ),
        result(
            "ssh: strong algorithms only",
            not weak,
            "as ssh-audit's hardened policy" if not weak else "offered: " + ", ".join(weak),
            SETUP,
        ),
        result(
            "deploy user's sudo: onebox-agent only",
            # everything, as [security] deploy_sudo = "all" asked: said, not failed
            (None if deploy_sudo == "all" else True) if sudo_ok else False,
            sudo_detail,
            SETUP,
        ),
    ]


def _debian() -> str:
    text = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    match = re.search(r'^VERSION_ID="?(\d+)', text, re.MULTILINE)
    return match.group(1) if match else ""


# --------------------------------------------------------------------------- baseline


def check_baseline() -> list[Check]:
    wanted = {
        baseline.SYSCTL: baseline.SYSCTL_TEXT,
        baseline.MODPROBE: baseline.MODPROBE_TEXT,
        baseline.LIMITS: baseline.LIMITS_TEXT,
        baseline.COREDUMP: baseline.COREDUMP_TEXT,
        baseline.PROFILE: baseline.PROFILE_TEXT,
    }
    wrong = [str(path) for path, text in wanted.items() if not _same(path, text)]
    wrong += [f"{path} runnable by all" for path in baseline.open_compilers()]
    login = baseline.LOGIN_DEFS.read_text() if baseline.LOGIN_DEFS.is_file() else ""
    if not re.search(r"^UMASK\s+027$", login, re.MULTILINE):
        wrong.append(f"{baseline.LOGIN_DEFS} (UMASK)")
    return [
        result(
            "system baseline (sysctl, modules, core dumps, umask, compilers)",
            not wrong,
            "missing or changed: " + ", ".join(wrong) if wrong else "as setup left it",
            SETUP,
        )
    ]


def _same(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text() == text


# --------------------------------------------------------------------------- fail2ban


def check_fail2ban() -> list[Check]:
    checks = []
    for name in bruteforce.JAILS:
        jail = run(["fail2ban-client", "status", name], check=False)
        ok = jail.returncode == 0 and bruteforce.JAIL.is_file()
        banned = re.search(r"Currently banned:\s*(\d+)", jail.stdout)
        detail = f"active, {banned.group(1)} banned now" if ok and banned else "not running"
        checks.append(result(f"fail2ban's {name} jail", ok, detail, SETUP))
    return checks


# --------------------------------------------------------------------------- updates


def check_updates() -> list[Check]:
    state = updates.state()
    timer = run(["systemctl", "is-enabled", "apt-daily-upgrade.timer"], check=False).stdout
    enabled = bool(state["unattended_upgrades"]) and timer.strip() == "enabled"
    pending = updates.pending_security_updates()
    outdated = state["outdated_services"]
    return [
        result("security updates install by themselves", enabled, "unattended-upgrades", SETUP),
        result(
            "no security update waiting",
            True if not pending else None,
            f"{len(pending)} waiting: {', '.join(pending[:8])}" if pending else "none",
            "they install by themselves within a day; or `apt-get upgrade` on the server",
        ),
        result(
            "no reboot waiting",
            True if not state["reboot_required"] else None,
            "a reboot is needed (a new kernel)" if state["reboot_required"] else "none",
            "reboot the server at a quiet hour, or set [security] reboot_at",
        ),
        result(
            "no service runs replaced libraries",
            True if not outdated else None,
            ", ".join(outdated) if outdated else "none",
            "restart them at a quiet moment, or reboot (a deploy restarts the app)",
        ),
    ]


# --------------------------------------------------------------------------- units


def exposure(unit: str) -> float | None:
    out = run(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    return float(match.group(1)) if match else None


def check_units(paths: AppPaths) -> list[Check]:
    units = [f"onebox-{paths.app}@{live_slot(paths) or 'blue'}.service"]
    units += [f"onebox-{paths.app}-{job}.service" for job in ("backup", "verify")]
    running = background.installed(paths)  # [processes] and [schedule]
    units += [paths.process_unit(name, 1) for name in running["processes"]]
    units += [paths.schedule_unit(name) for name in running["schedules"]]
    checks = []
    for unit in units:
        score = exposure(unit)
        checks.append(
            result(
                f"sandbox of {unit}",
                score is not None and score <= EXPOSURE_LIMIT,
                f"systemd-analyze security: {score} (at most {EXPOSURE_LIMIT})",
                f"{SETUP} (a unit template of your own in .onebox/templates may loosen it)",
            )
        )
    return checks


def check_redis(paths: AppPaths) -> list[Check]:
    """[services] redis: reachable only from this server, and only by logging in."""
    if not redis_server.app_conf(paths.app).exists():
        return []
    found = redis_server.exposure()
    addresses = found["addresses"]
    local = bool(addresses) and all(a.strip("[]") in ("127.0.0.1", "::1") for a in addresses)
    anonymous = str((found["anonymous"] or [""])[0])
    return [
        result(
            "redis listens on this server only",
            local,
            f"listening on {', '.join(addresses) or 'nothing (is redis-server running?)'}",
            f"{SETUP} (it writes /etc/redis/onebox.conf: bind 127.0.0.1 -::1)",
        ),
        result(
            "redis needs a password",
            anonymous.startswith("-NOAUTH"),
            f"a connection that did not log in got {anonymous!r} to PING",
            f"{SETUP} (its default user is then off)",
        ),
    ]


# --------------------------------------------------------------------------- files


def check_secrets(paths: AppPaths) -> list[Check]:
    wanted = [(ETC, 0o700), (paths.secrets, 0o600), (paths.backup_key, 0o600)]
    if paths.backup_env.exists():
        wanted.append((paths.backup_env, 0o600))
    wrong = []
    for path, mode in wanted:
        try:
            info = path.stat()
        except FileNotFoundError:
            wrong.append(f"{path} is missing")
            continue
        if stat.S_IMODE(info.st_mode) != mode or info.st_uid != 0:
            wrong.append(f"{path} is {stat.S_IMODE(info.st_mode):04o} uid {info.st_uid}")
    return [
        result(
            "secrets readable by root only",
            not wrong,
            "; ".join(wrong) or "the secrets file, the backup key: 0600 root",
            SETUP,
        )
    ]


# --------------------------------------------------------------------------- backups


def _age(stamp: str) -> float:
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()


def check_backups(paths: AppPaths) -> list[Check]:
    state = backup_status(paths)
    last, verified = state.get("backup", {}), state.get("verify", {})
    if not last:
        fresh: Check = result("a recent backup", False, "no backup yet", "`onebox backup`")
    else:
        hours = _age(last["time"]) / 3600
        fresh = result(
            "a recent backup",
            bool(last.get("ok")) and hours <= BACKUP_MAX_AGE_HOURS,
            f"last {last.get('id', '?')}, {hours:.1f} h ago, "
            + ("ok" if last.get("ok") else "FAILED"),
            "`onebox backup`; `onebox logs` shows why the timer's backup failed",
        )
    if not verified:
        proof = result(
            "a backup proven restorable",
            None,
            "not verified yet (the weekly timer does it)",
            "`onebox backup verify`",
        )
    else:
        days = _age(verified["time"]) / 86400
        proof = result(
            "a backup proven restorable",
            bool(verified.get("ok")) and days <= VERIFY_MAX_AGE_DAYS,
            f"verified {days:.1f} days ago: {'ok' if verified.get('ok') else 'FAILED'}",
            "`onebox backup verify`",
        )
    return [fresh, proof]


# --------------------------------------------------------------------------- django


def check_django(paths: AppPaths, manage: str) -> list[Check]:
    """Django's deployment check on the live release, judged as a deploy judges it."""
    if not paths.current.is_symlink():
        return [result("django check --deploy", None, "nothing deployed yet", "`onebox deploy`")]
    target = paths.current.resolve()
    release = Release(paths.app, target, release_env(paths, target), manage)
    try:
        holding, provided, _ = deploy_check.sort(release.deploy_check())
    except AgentError as exc:
        return [result("django check --deploy", False, exc.message, "see `onebox logs`")]
    ids = [str(m.get("id") or "?") for m in holding]
    detail = "no issues" if not ids else "issues: " + ", ".join(ids)
    if provided and not ids:
        detail += f" (provided by onebox's proxy: {', '.join(sorted(set(provided)))})"
    return [
        result(
            "django check --deploy",
            not ids,
            detail,
            "fix the settings the check names (see docs/security.md), then deploy",
        )
    ]


# --------------------------------------------------------------------------- lynis


def check_lynis() -> list[Check]:
    if apt_install(["lynis"]):
        # Debian 13's package schedules a daily audit of its own: asked for once, run once.
        run(["systemctl", "disable", "--now", "--quiet", "lynis.timer"], check=False)
    started = time.monotonic()
    run(["lynis", "audit", "system", "--quick", "--no-colors", "--quiet"], check=False, timeout=900)
    report = Path("/var/log/lynis-report.dat")
    text = report.read_text(errors="replace") if report.is_file() else ""
    index = re.search(r"^hardening_index=(\d+)", text, re.MULTILINE)
    warnings = re.findall(r"^warning\[\]=([^|]+)\|([^|]*)", text, re.MULTILINE)
    score = int(index.group(1)) if index else 0
    listed = ", ".join(f"{test} {message}".strip() for test, message in warnings[:6])
    return [
        result(
            "lynis hardening index",
            score >= 80 if index else False,
            f"{score} (in {time.monotonic() - started:.0f}s); warnings: {listed or 'none'}",
            "read /var/log/lynis-report.dat on the server",
        )
    ]

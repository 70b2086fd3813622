"""Small idempotent primitives: run a command, write a file, make a directory, a user, a link.

Each primitive compares what is there with what is wanted and reports whether it changed
anything, so that a second `onebox setup` can say "unchanged" truthfully.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .paths import LISTS_STAMP
from .protocol import AgentError

# needrestart suspended: an install by onebox must never restart services (the app, the
# database, onebox's own running agent) because a library it pulled in was upgraded.
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1"}
# Wait for apt's lock (unattended-upgrades runs on a fresh server's first hour) instead of
# failing at once.
APT_WAIT = ["-o", "DPkg::Lock::Timeout=300"]


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    check: bool = True,
    timeout: float | None = None,
    what: str = "",
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (never through a shell), capturing output; raise AgentError on failure.

    `input` goes to the command's stdin: the way to pass SQL that holds a password."""
    full_env = {**BASE_ENV, **(env or {})}
    kwargs = as_user(user, full_env)
    try:
        result = subprocess.run(
            list(argv),
            env=full_env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            **kwargs,
        )
    except FileNotFoundError:
        raise AgentError(f"{argv[0]} is not installed on the server") from None
    except subprocess.TimeoutExpired as exc:
        raise AgentError(
            f"{what or argv[0]} took longer than {timeout:.0f}s", command=shlex.join(argv)
        ) from exc
    if check and result.returncode != 0:
        raise AgentError(
            f"{what or shlex.join(argv)} failed (exit {result.returncode})",
            command=shlex.join(argv),
            output=tail(result.stdout + "\n" + result.stderr),
        )
    return result


def as_user(user: str | None, env: dict[str, str]) -> dict[str, Any]:
    """subprocess arguments that drop to `user` (and its HOME in env); {} for root."""
    if not user:
        return {}
    entry = pwd.getpwnam(user)
    env.setdefault("HOME", entry.pw_dir)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def write_file(
    path: Path, content: str | bytes, *, mode: int = 0o644, owner: str = "root", group: str = "root"
) -> bool:
    """Write atomically (temp file + rename); return False when nothing differed."""
    data = content.encode() if isinstance(content, str) else content
    uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    if not path.is_symlink() and path.is_file() and path.read_bytes() == data:
        return fix_mode(path, mode, uid, gid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.onebox-tmp")
    # Never through a link: a folder the app once wrote (a release, during its build) may
    # hold one planted where this temp file goes, pointing at a file of root's.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chown(tmp, uid, gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def fix_mode(path: Path, mode: int, uid: int, gid: int) -> bool:
    info = path.lstat()
    changed = False
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    if info.st_mode & 0o7777 != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def ensure_dir(path: Path, *, mode: int = 0o755, owner: str = "root", group: str = "root") -> bool:
    created = False
    if not path.is_dir():
        path.mkdir(parents=True)
        created = True
    return fix_mode(path, mode, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid) or created


def ensure_symlink(link: Path, target: str | Path) -> bool:
    """Point link at target atomically (temp link + rename), like `ln -s` + `mv -T`."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return False
    tmp = link.with_name(f".{link.name}.onebox-tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
    return True


def unit_journal(unit: str, lines: int = 30) -> str:
    """The last lines a systemd unit logged (for an error's output)."""
    result = run(
        ["journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit], check=False
    )
    return tail(result.stdout, lines)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_members(group: str) -> list[str]:
    try:
        return list(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []


def missing_packages(packages: Sequence[str]) -> list[str]:
    missing = []
    for package in packages:
        result = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
        if "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


# apt-get update's last success: onebox's own runs, or apt's daily timer.
LISTS_STAMPS = (
    LISTS_STAMP,
    Path("/var/lib/apt/periodic/update-success-stamp"),
)


def refresh_package_lists(stale_after: float) -> None:
    """apt-get update, unless the lists are younger than stale_after seconds."""
    ages = [time.time() - s.stat().st_mtime for s in LISTS_STAMPS if s.exists()]
    if ages and min(ages) < stale_after:
        return
    run(["apt-get", *APT_WAIT, "update", "-qq"], env=APT_ENV, what="apt-get update", timeout=600)
    LISTS_STAMPS[0].parent.mkdir(parents=True, exist_ok=True)
    LISTS_STAMPS[0].touch()


def apt_install(packages: Sequence[str]) -> list[str]:
    """Install the packages that are missing; return those installed."""
    missing = missing_packages(packages)
    if missing:
        refresh_package_lists(stale_after=300)
        run(
            ["apt-get", *APT_WAIT, "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=APT_ENV,
            what=f"installing {' '.join(missing)}",
            timeout=1200,
        )
    return missing


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a systemd EnvironmentFile as onebox writes it (KEY="value", escaped).

    Lines end at a newline only, as systemd reads them (str.splitlines would also split
    at a CR, a form feed or U+2028, and turn the rest of a value into keys)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_bytes().decode().split("\n"):  # read_text would turn CRs into \n
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        values[key.strip()] = raw
    return values


# The kernel's limit on one environment string ("KEY=value"): MAX_ARG_STRLEN, 128 KiB.
# Past it, exec fails ("Argument list too long") and the app cannot start. All of them
# together must also fit beside the arguments (ARG_MAX): onebox keeps the file under 1 MiB.
MAX_ENTRY = 128 * 1024 - 1
MAX_ENV_FILE = 1024 * 1024
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def env_entry_problem(key: str, value: str) -> str:
    """Why systemd's EnvironmentFile (or exec) cannot hold KEY=value; "" when it can."""
    if not ENV_KEY.fullmatch(key):
        return (
            f"{key!r} is not a variable name systemd keeps: ASCII letters, digits and _, "
            "not starting with a digit"
        )
    if ENV_CONTROL.search(value):
        return (
            f"the value of {key} holds a control character (a newline, CR or the like), "
            "which an environment file cannot hold"
        )
    size = len(key.encode()) + 1 + len(value.encode())
    if size > MAX_ENTRY:
        return (
            f"{key} is {size} bytes long; one environment variable can be at most "
            f"{MAX_ENTRY} bytes (the kernel's MAX_ARG_STRLEN, 128 KiB)"
        )
    return ""


def format_env_file(values: Mapping[str, str], header: str = "") -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    for key in sorted(values):
        # systemd un-escapes \\ and \" inside double quotes; values never hold newlines.
        escaped = values[key].replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"

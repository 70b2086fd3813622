"""Redis from Debian for the app ([services] redis): local only, its own password, a limit.

Redis listens on 127.0.0.1 and ::1 only (the firewall does not open it either), and its
`default` user is off: every connection must log in. Each app gets a Redis user of its
own (ACL) whose password only the app's secrets file holds; the config files hold its
SHA-256, and the user may not reconfigure Redis (-@admin: no CONFIG, no SHUTDOWN, no
ACL), so code that takes over the app cannot turn Redis into a way to write files.

Memory: `maxmemory` from the server's memory unless set. As Celery's broker nothing is
ever evicted (`noeviction`: when full, Redis refuses new writes instead of dropping a
queued task); as a cache the least recently used keys go (`allkeys-lru`). Without
`persist` nothing is written to disk: Redis then holds only what can be rebuilt.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from .paths import AppPaths
from .protocol import AgentError, ExitCode
from .system import format_env_file, read_env_file, run, unit_journal, write_file

CONF_DIR = Path("/etc/redis")
MAIN_CONF = CONF_DIR / "redis.conf"
COMMON_CONF = CONF_DIR / "onebox.conf"
INCLUDE = "include /etc/redis/onebox*.conf"
PORT = 6379
UNIT = "redis-server.service"
MB = 1 << 20

COMMON_TEMPLATE = """\
# Written by onebox ([services] redis in onebox.toml): included last by redis.conf.
bind 127.0.0.1 -::1
protected-mode yes
port {port}
# Every connection logs in as an app's own user (onebox-<app>.conf).
user default off
maxmemory {maxmemory}
maxmemory-policy {policy}
{persistence}
"""
NO_PERSISTENCE = 'save ""\nappendonly no'
PERSISTENCE = "appendonly yes\nappendfsync everysec\nsave 3600 1 300 100 60 10000"


def app_conf(app: str) -> Path:
    return CONF_DIR / f"onebox-{app}.conf"


def default_maxmemory() -> str:
    """A sixteenth of the memory, between 64 and 256 MB: room for queues and a cache on
    a small server, and never the memory the app and its database need."""
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    return f"{min(max(total // 16 // MB, 64), 256)}mb"


def ensure(paths: AppPaths, redis: dict | None) -> bool:
    """Redis configured for the app, running, and its URL in the app's secrets file."""
    if redis is None:
        return remove(paths)
    values = read_env_file(paths.secrets)
    password = values.get("REDIS_PASSWORD") or secrets.token_urlsafe(32)
    policy = "noeviction" if redis["role"] == "broker" else "allkeys-lru"
    common = COMMON_TEMPLATE.format(
        port=PORT,
        maxmemory=redis.get("maxmemory") or default_maxmemory(),
        policy=policy,
        persistence=PERSISTENCE if redis.get("persist") else NO_PERSISTENCE,
    )
    digest = hashlib.sha256(password.encode()).hexdigest()
    user = (
        f"# Written by onebox: the Redis user of {paths.app} (its password is in "
        f"{paths.secrets}).\nuser {paths.app} on #{digest} ~* &* +@all -@admin\n"
    )
    changed = write_file(COMMON_CONF, common, mode=0o640, group="redis")
    changed |= write_file(app_conf(paths.app), user, mode=0o640, group="redis")
    changed |= include_ours()
    if changed or not active():
        run(["systemctl", "enable", "--quiet", UNIT], check=False)
        run(["systemctl", "restart", UNIT], what="starting Redis")
    wait_ready(paths.app, password)
    changed |= write_secrets(paths, values, password, redis)
    return changed


def include_ours() -> bool:
    text = MAIN_CONF.read_text() if MAIN_CONF.is_file() else ""
    if INCLUDE in text.splitlines():
        return False
    write_file(MAIN_CONF, text.rstrip("\n") + f"\n\n# onebox's settings win\n{INCLUDE}\n",
               mode=0o640, group="redis")  # fmt: skip
    return True


def url(app: str, password: str) -> str:
    return f"redis://{app}:{password}@127.0.0.1:{PORT}/0"


def write_secrets(paths: AppPaths, values: dict[str, str], password: str, redis: dict) -> bool:
    """REDIS_URL (and CELERY_BROKER_URL for Celery) in the secrets file; a URL the user
    set to another Redis is left alone."""
    wanted = {"REDIS_PASSWORD": password, "REDIS_URL": url(paths.app, password)}
    if redis["role"] == "broker" or redis.get("celery"):
        wanted["CELERY_BROKER_URL"] = wanted["REDIS_URL"]
    changed = False
    for key, value in wanted.items():
        current = values.get(key)
        ours = (
            current is None
            or key == "REDIS_PASSWORD"
            or current.startswith(f"redis://{paths.app}:")
        )
        if ours and current != value:
            values[key] = value
            changed = True
    if changed:
        from .provision import SECRETS_HEADER

        write_file(paths.secrets, format_env_file(values, SECRETS_HEADER), mode=0o600)
    return changed


def remove(paths: AppPaths) -> bool:
    """[services] redis taken out: the app's Redis user goes (Redis itself stays: other
    apps may use it, and its package is the user's to remove)."""
    conf = app_conf(paths.app)
    if not conf.exists():
        return False
    conf.unlink()
    if active():
        run(["systemctl", "restart", UNIT], check=False)
    return True


def active() -> bool:
    return run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "active"


def command(*words: str) -> bytes:
    """A command in Redis' protocol (RESP): safe for any bytes in a password."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def ask(*commands: bytes, timeout: float = 3) -> list[str]:
    """Send commands on one connection; the first line of each answer."""
    with socket.create_connection(("127.0.0.1", PORT), timeout=timeout) as connection:
        connection.sendall(b"".join(commands))
        answers: list[str] = []
        buffer = b""
        while len(answers) < len(commands):
            chunk = connection.recv(4096)
            if not chunk:
                break
            buffer += chunk
            while b"\r\n" in buffer and len(answers) < len(commands):
                line, buffer = buffer.split(b"\r\n", 1)
                answers.append(line.decode(errors="replace"))
        return answers


def wait_ready(app: str, password: str, timeout: float = 20) -> None:
    """Redis answers, and the app's user gets in."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            answers = ask(command("AUTH", app, password), command("PING"))
        except OSError as exc:
            last = str(exc)
        else:
            if answers == ["+OK", "+PONG"]:
                return
            last = " / ".join(answers)
        time.sleep(0.3)
    raise AgentError(
        f"Redis does not answer for {app} ({last})",
        output=unit_journal(UNIT, 20),
        hint="`systemctl status redis-server` on the server says why; then run "
        "`onebox setup` again",
    )


def check_running(app: str) -> None:
    """Before a deploy changes anything: the app's Redis is up (started if it was not)."""
    if not app_conf(app).exists():
        raise AgentError(
            "onebox.toml has [services] redis, and it is not set up on this server",
            hint="run `onebox setup` first (it installs and configures Redis)",
            code=ExitCode.CONFIG,
        )
    if active():
        return
    run(["systemctl", "start", UNIT], check=False)
    try:
        values = read_env_file(AppPaths(app).secrets)
        wait_ready(app, values.get("REDIS_PASSWORD", ""), timeout=10)
    except AgentError as exc:
        raise AgentError(
            "Redis ([services] redis) is not running and does not start; nothing was changed",
            output=exc.output,
            hint="`systemctl status redis-server` on the server says why (a full disk, "
            "its config); `onebox setup` writes its config again",
        ) from None


def exposure() -> dict[str, Any]:
    """For the audit: where Redis listens, and whether it lets in a connection that did
    not log in."""
    listening = run(["ss", "-Hltn", f"sport = :{PORT}"], check=False).stdout.split("\n")
    addresses = [line.split()[3].rsplit(":", 1)[0] for line in listening if line.strip()]
    try:
        answer = ask(command("PING"))
    except OSError as exc:
        answer = [f"no answer: {exc}"]
    return {"addresses": addresses, "anonymous": answer[:1]}

"""Blue/green slots: start the new release beside the live one, check it, move traffic.

Caddy always dials one fixed socket path, `live.sock`. A switch hard-links the new
slot's listening socket to a temp name and renames it over `live.sock`: new connections
reach the new release, connections already open finish on the old one, and Caddy's
configuration never changes (a Caddy reload was measured to drop kept-alive requests).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from . import later
from .django import hint_for
from .paths import SLOTS, AppPaths
from .protocol import AgentError
from .sizing import UPSTREAM_KEEPALIVE
from .system import ensure_symlink, run, unit_journal


def live_slot(paths: AppPaths) -> str | None:
    if paths.live_slot.is_symlink():
        slot = os.readlink(paths.live_slot)
        return slot if slot in SLOTS else None
    return None


def idle_slot(paths: AppPaths) -> str:
    return "green" if live_slot(paths) == "blue" else "blue"


def start_slot(paths: AppPaths, slot: str, release: Path) -> None:
    unit = paths.unit(slot)
    wait_unused(paths, slot)  # (a standby there: the proxy's idle connections go first)
    run(["systemctl", "stop", unit], check=False)
    ensure_symlink(paths.slot_link(slot), release)
    result = run(["systemctl", "start", unit], check=False, timeout=120)
    if result.returncode != 0:
        raise AgentError(
            "the new release did not start; the live release keeps serving",
            output=journal(paths, slot),
        )


CLIENT_ERROR_GRACE = 5.0  # seconds of steady 4xx answers before the health check gives up
SERVER_ERROR_GRACE = 10.0  # of steady 500s (502-504 may be a slow start: those get it all)


def unit_state(paths: AppPaths, slot: str) -> tuple[str, int]:
    out = run(
        ["systemctl", "show", paths.unit(slot), "--property=ActiveState,SubState,NRestarts"],
        check=False,
    ).stdout
    values = dict(line.partition("=")[::2] for line in out.splitlines())
    state = values.get("ActiveState", "")
    if values.get("SubState") == "auto-restart":  # died; systemd restarts it in a moment
        state = "failed"
    return state, int(values.get("NRestarts") or 0)


def crashed(paths: AppPaths, slot: str) -> bool:
    state, restarts = unit_state(paths, slot)
    return state in ("failed", "inactive") or restarts > 0


def wait_healthy(paths: AppPaths, slot: str, host: str, path: str, timeout: float = 60) -> None:
    """Poll the slot's own socket until the health path answers 2xx/3xx.

    Gives up early when waiting cannot help: the unit died or systemd restarted it (the
    app crashed), or the app keeps answering 4xx (5 s) or 500 (10 s)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    errors_since: float | None = None
    while time.monotonic() < deadline:
        if crashed(paths, slot):
            raise AgentError(
                "the new release crashed while starting; the live release keeps serving",
                output=journal(paths, slot),
                hint=hint_for(journal(paths, slot)),
            )
        try:
            status = http_status(paths.socket(slot), host, path)
        except OSError as exc:
            last = str(exc)
        else:
            if 200 <= status < 400:
                return
            last = f"HTTP {status}"
            # The app answers, and says no: waiting longer will not help.
            grace = CLIENT_ERROR_GRACE if 400 <= status < 500 and status != 429 else None
            grace = SERVER_ERROR_GRACE if status == 500 else grace
            if grace is None:
                errors_since = None
            else:
                errors_since = errors_since or time.monotonic()
                if time.monotonic() - errors_since > grace:
                    break
        time.sleep(0.2)
    raise AgentError(
        f"the new release failed its health check on {path} ({last}); the live "
        "release keeps serving",
        output=journal(paths, slot),
        hint="check the app's log above; set [app] health_path to a page that "
        "answers 200 without logging in",
    )


MAX_REDIRECTS = 3


def check_pages(paths: AppPaths, slot: str, host: str, pages: dict) -> None:
    """Real pages of the new release, before it gets traffic: a release whose home page
    answers 500 (a template that cannot find its static file, say) never serves.

    Redirects within the site are followed (a login page, a trailing slash), at most
    MAX_REDIRECTS. strict: each must end in 2xx/3xx; else anything but 5xx will do."""
    for path in pages.get("paths", []):
        status, final = fetch_page(paths.socket(slot), host, path)
        bad = status >= 500 or (pages.get("strict") and status >= 400)
        if bad:
            via = f" (redirected to {final})" if final != path else ""
            log = journal(paths, slot)
            raise AgentError(
                f"the new release answers HTTP {status} on {path}{via}; the live release "
                "keeps serving",
                output=log,
                command=f"GET https://{host}{path}",
                hint=hint_for(log)
                if status >= 500
                else "fix the page, or change [app] health_path",
            )


def fetch_page(sock_path: Path, host: str, path: str) -> tuple[int, str]:
    """(status, the path it ended on), following redirects that stay on this site."""
    for _ in range(MAX_REDIRECTS + 1):
        status, location = _get(sock_path, host, path)
        if status not in (301, 302, 303, 307, 308) or not location:
            return status, path
        target = urlsplit(urljoin(f"https://{host}{path}", location))
        if target.hostname != host.split(":")[0]:
            return status, path  # off the site: its answer is not this release's
        path = target.path + (f"?{target.query}" if target.query else "")
    return status, path


def _get(sock_path: Path, host: str, path: str) -> tuple[int, str]:
    status, location, _ = _fetch(sock_path, host, path)
    return status, location


def _fetch(sock_path: Path, host: str, path: str) -> tuple[int, str, bytes]:
    """(status, Location, body) of a GET on the slot's own socket."""
    connection = _UnixHTTPConnection(str(sock_path))
    try:
        connection.request("GET", path, headers=HEALTH_HEADERS | {"Host": host})
        response = connection.getresponse()
        return response.status, response.getheader("Location", ""), response.read()
    finally:
        connection.close()


MIGRATIONS_PATH = "/.onebox/migrations"  # (onebox_wsgi's answer: see wsgi_health.py)
HEALTH_HEADERS = {"X-Forwarded-Proto": "https", "User-Agent": "onebox-health"}
PROBATION_STRIKES = 3  # health checks failed in a row that end a probation


def watch(paths: AppPaths, slot: str, host: str, path: str, seconds: float) -> str | None:
    """The new release's first seconds with traffic, while the old one still runs: what
    went wrong (it crashed, or stopped answering its health check), or None."""
    deadline = time.monotonic() + seconds
    strikes, last = 0, ""
    while time.monotonic() < deadline:
        if crashed(paths, slot):
            return "crashed right after the switch"
        try:
            status = http_status(paths.socket(slot), host, path)
            last = f"HTTP {status}"
        except OSError as exc:
            status, last = 0, str(exc)
        strikes = 0 if 200 <= status < 400 else strikes + 1
        if strikes >= PROBATION_STRIKES:
            return f"failed its health check on {path} right after the switch ({last})"
        time.sleep(0.25)
    return None


def get_json(sock_path: Path, host: str, path: str) -> dict | None:
    """A JSON answer of the slot's own (onebox_wsgi's), or None when it gives none."""
    try:
        status, _, body = _fetch(sock_path, host, path)
        return json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None


def http_status(sock_path: Path, host: str, path: str) -> int:
    return _get(sock_path, host, path)[0]


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, sock_path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.sock_path = sock_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.sock_path)


def route_to(paths: AppPaths, slot: str, release: Path) -> None:
    """Atomically point live.sock (traffic), current (static files) and live (state) at slot."""
    relink(paths, slot)
    ensure_symlink(paths.current, release)
    ensure_symlink(paths.live_slot, slot)


def relink(paths: AppPaths, slot: str) -> None:
    """live.sock: a hard link to the slot's socket, put in place in one rename."""
    tmp = paths.run / f".live-{slot}"
    tmp.unlink(missing_ok=True)
    os.link(paths.socket(slot), tmp)
    os.replace(tmp, paths.live_socket)


def main(app: str, slot: str) -> int:
    """The slot unit's ExecStartPost (as the app): a live slot that starts again (after
    a reboot, a crash) gets live.sock back; an idle one leaves it alone."""
    paths = AppPaths(app)
    if slot in SLOTS and live_slot(paths) == slot:
        relink(paths, slot)
    return 0


def keep_standby(paths: AppPaths, old: str, new: str) -> None:
    """The old slot keeps running, not live, and is not started at boot (a standby is
    for the rollback right after a deploy, not for every boot)."""
    run(["systemctl", "enable", "--quiet", paths.unit(new)], check=False)
    run(["systemctl", "disable", "--quiet", paths.unit(old)], check=False)


def retire(paths: AppPaths, old: str | None, new: str) -> None:
    """Stop the old slot after its in-flight requests finish (gunicorn's graceful stop)."""
    run(["systemctl", "enable", "--quiet", paths.unit(new)], check=False)
    if old and old != new:
        run(["systemctl", "disable", "--quiet", paths.unit(old)], check=False)
        wait_unused(paths, old)
        # systemctl waits for the unit's TimeoutStopSec ([deploy] drain + 10 s)
        run(["systemctl", "stop", paths.unit(old)], check=False, timeout=3700)


def wait_unused(paths: AppPaths, slot: str, limit: float = UPSTREAM_KEEPALIVE + 1.5) -> None:
    """Wait (at most `limit` s) until no connection to the slot's socket is left open.

    The proxy keeps connections to gunicorn open; after a switch the slot no longer
    live closes each one it answers, and the proxy closes the idle rest after
    UPSTREAM_KEEPALIVE seconds. gunicorn's graceful stop finishes requests in flight,
    but a request the proxy writes on an idle connection as the worker exits is lost:
    so the slot stops once nothing is connected to it."""
    deadline = time.monotonic() + limit
    while connections(paths.socket(slot)) and time.monotonic() < deadline:
        time.sleep(0.05)


def connections(sock_path: Path, table: Path = Path("/proc/net/unix")) -> int:
    """Connections accepted on a listening Unix socket (they show its path, state 03)."""
    wanted, count = str(sock_path), 0
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[5] == "03" and fields[7] == wanted:
            count += 1
    return count


def journal(paths: AppPaths, slot: str, lines: int = 30) -> str:
    return unit_journal(paths.unit(slot), lines)


def retire_later(paths: AppPaths, old: str | None, new: str, drain: float) -> None:
    """`retire`, once the client has its answer (later.py): the client is done when
    traffic is on the new release; the deploy lock is held until the old slot stopped."""
    if old and old != new:
        seconds = drain + UPSTREAM_KEEPALIVE + 20
        if later.after_answer(
            lambda: retire(paths, old, new), paths.lock, f"stopping the {old} slot", seconds
        ):
            return
    retire(paths, old, new)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

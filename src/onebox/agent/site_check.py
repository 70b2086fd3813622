"""What a visitor gets: the site asked through the proxy in front (Caddy, or an adopted
site's Apache), on the server itself, and what stands between the two (it stopped, the
maintenance page, a live slot that is down).

A health check on the slot's own socket says the app answers; only this says the site
does. `status` exits non-zero on any problem found here, and a deploy says what it is
instead of "live at".
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import re
import socket
import ssl
from typing import Any

from . import apache_site
from .paths import AppPaths
from .requests import SwitchRequest
from .switch import live_slot
from .system import read_env_file, run


def through_proxy(address: str, path: str, port: int = 443) -> int | str:
    """The HTTP status of GET https://address/path through the local proxy (Caddy, or
    Apache), or why there is none. TLS is not verified: this is the server asking itself."""
    connection = _LocalHTTPS(address, port)
    try:
        connection.request(
            "GET", path, headers={"Host": address, "User-Agent": "onebox-site-check"}
        )
        return connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"no answer ({exc.__class__.__name__}: {exc})"
    finally:
        connection.close()


class _LocalHTTPS(http.client.HTTPSConnection):
    """Connects to this machine, naming the site in TLS (SNI) as a browser would."""

    def __init__(self, address: str, port: int = 443) -> None:
        super().__init__(address, port, timeout=10, context=_context())
        self.site = address

    def connect(self) -> None:
        try:  # an address site: Caddy picks its certificate by the address dialled
            ipaddress.ip_address(self.site)
            dial, name = self.site, None
        except ValueError:
            dial, name = "127.0.0.1", self.site
        sock = socket.create_connection((dial, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = _context().wrap_socket(sock, server_hostname=name)


@functools.cache
def _context() -> ssl.SSLContext:
    """Made once: loading the CA store (unused here) costs 20 ms each time."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def after_switch(paths: AppPaths, request: SwitchRequest) -> dict[str, Any]:
    """For a deploy's or a rollback's result: the problems that make it a failure, and
    whether the maintenance page (said, not a failure) is up."""
    found = problems(paths, request.address, request.health_path, live_slot(paths))
    return {
        "problems": [problem for problem in found if problem != MAINTENANCE],
        "maintenance": MAINTENANCE in found,
    }


def caddy_active() -> bool:
    return run(["systemctl", "is-active", "caddy"], check=False).stdout.strip() == "active"


def proxy(paths: AppPaths) -> tuple[str, str]:
    """The service in front of the app, (its name for people, its unit): Caddy, or an
    adopted site's Apache."""
    return ("Apache", "apache2") if apache_site.in_front(paths) else ("Caddy", "caddy")


def proxy_unit(paths: AppPaths) -> str:
    return proxy(paths)[1]


def proxy_name(paths: AppPaths) -> str:
    return proxy(paths)[0]


def proxy_active(paths: AppPaths) -> bool:
    unit = proxy_unit(paths)
    return run(["systemctl", "is-active", unit], check=False).stdout.strip() == "active"


def maintenance_on(paths: AppPaths) -> bool:
    return (paths.maintenance / "on.html").exists()


def live_address(paths: AppPaths) -> str:
    """The name the live release was deployed for (the onebox.toml at hand may say
    another, or none): its ALLOWED_HOSTS, which onebox sets to it."""
    env = read_env_file(paths.current / ".onebox" / "release.env")
    first = env.get("ALLOWED_HOSTS", "").split(",")[0].strip()
    return first if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.:-]*", first) else ""  # not "*", ".x.com"


MAINTENANCE = "maintenance mode is on: visitors get a 503 page (`onebox maintenance off`)"


def problems(paths: AppPaths, address: str, health_path: str, slot: str | None) -> list[str]:
    """Why visitors do not get the live release, each with what to do; [] when they do.
    The maintenance page is one of them (MAINTENANCE): for a deploy, the user's choice."""
    found = []
    name, unit = proxy(paths)
    if run(["systemctl", "is-active", unit], check=False).stdout.strip() != "active":
        found.append(
            f"{name} is not running: nothing answers on ports 80 and 443 "
            f"(`onebox setup` starts it; `journalctl -u {unit}` shows why it stopped)"
        )
    if slot is None:  # not deployed yet: nothing is down
        return found
    if apache_site.in_front(paths) and not apache_site.includes_onebox(paths):
        found.append(
            "Apache serves the adopted site with mod_wsgi, not onebox's live release "
            "(`onebox adopt --undo` was run): `onebox deploy` moves it back"
        )
    unit = paths.unit(slot)
    state = run(["systemctl", "is-active", unit], check=False).stdout.strip()
    if state != "active":
        found.append(f"the live release's app ({unit}) is {state}: `onebox logs` says why")
    if paths.current.is_symlink() and not paths.current.resolve().is_dir():
        found.append(
            f"the live release's folder {paths.current.resolve()} is gone: "
            "`onebox rollback` to a kept release, or `onebox deploy`"
        )
    if maintenance_on(paths):
        found.append(MAINTENANCE)
    elif not found:
        address = live_address(paths) or address
        for path, fine in ((health_path, (200,)), ("/", range(200, 500))):
            answer = through_proxy(address, path)
            if answer not in fine:
                said = f"answers {answer}" if isinstance(answer, int) else f"gets {answer}"
                found.append(f"https://{address}{path}, asked through {name}, {said}")
    return found

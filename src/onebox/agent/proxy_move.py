"""Moving an adopted site off Apache onto onebox's Caddy, without a failed request, and
the way back (`onebox adopt --switch-to caddy|apache`).

To Caddy (TO_CADDY): Caddy starts beside Apache on the move ports (8080, 8443) with the
vhost's certificate and is checked there; the firewall sends new connections on 80 and
443 to it (a redirect: connections already open stay with Apache); Apache drains — each
answer closes its connection, so kept-alive clients reconnect, to Caddy — and, once it
holds no connection, stops. Caddy then restarts onto 80 and 443 while new connections
wait (their SYN dropped for that moment: the client sends it again, it is never
refused), and the redirect goes. Until Caddy answers there, every step is undone if a
later one fails; Apache stays installed, disabled, for the way back.

Back to Apache (TO_APACHE): Caddy drains, new connections wait (their SYN is dropped for
the moment Apache needs to start: the client sends it again, it is never refused),
Caddy stops, Apache starts, the connections come in.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from . import apache_config, apache_site, site_check
from .drain import drain, undrain
from .lock import deploy_lock
from .paths import (
    CADDY_DROPIN,
    CADDY_SITES,
    CADDYFILE,
    MOVE_PORTS,
    AppPaths,
)
from .protocol import AgentError, ExitCode, emit
from .provision import CADDY_DROPIN_TEXT, caddy_validate, ensure_access_log, ensure_app_user
from .requests import ProxyMoveRequest
from .steps import Step, run_steps
from .system import apt_install, ensure_dir, run, write_file

POLICY_RC = Path("/usr/sbin/policy-rc.d")  # Debian's "do not start what you install"
MOVE_TABLE = "inet onebox_move"
HOLD_TABLE = "inet onebox_hold"
DRAIN_WAIT = 30.0  # seconds Apache (or Caddy) gets to see its kept-alive clients go


@dataclass(kw_only=True)
class Move:
    request: ProxyMoveRequest
    paths: AppPaths
    accept_rule: str = ""  # the handle of the rule that lets redirected packets in

    @property
    def files(self) -> dict[str, str]:
        return self.request.files


# ----------------------------------------------------------------- to Caddy


def check_can_move(m: Move) -> None:
    if not apache_site.in_front(m.paths):
        raise AgentError(
            f"{m.paths.app} is not served through Apache here",
            hint='the move is for a site adopted with [server] proxy = "apache"',
            code=ExitCode.CONFIG,
        )
    if not apache_site.includes_onebox(m.paths) or not m.paths.live_socket.exists():
        raise AgentError(
            "onebox's release does not serve the site yet (mod_wsgi does)",
            hint="`onebox deploy` first: the move keeps the release, only the proxy changes",
            code=ExitCode.CONFIG,
        )
    ours = {
        name
        for host in apache_config.virtual_hosts(apache_site.vhost_file(m.paths))
        for name in host.names
    }
    others = apache_config.other_sites(apache_config.served_names(), ours)
    if others:
        raise AgentError(
            f"Apache also serves {'; '.join(others)}: once Caddy holds ports 80 and 443 "
            "they would be offline, so nothing was changed",
            hint="move those sites elsewhere (or disable them: a2dissite) first, or keep "
            'Apache in front of this one: [server] proxy = "apache" needs no move',
            code=ExitCode.CONFIG,
        )


def install_caddy(m: Move) -> bool:
    """Debian's caddy, not started (it would fight Apache for port 80)."""
    if shutil.which("caddy"):
        return False
    write_file(POLICY_RC, "#!/bin/sh\nexit 101\n", mode=0o755)
    try:
        apt_install(["caddy"])
    finally:
        POLICY_RC.unlink(missing_ok=True)
    return True


def caddy_files(m: Move, ports: str) -> None:
    """onebox's Caddyfile and site for `ports` ("moving" or "normal"), checked first."""
    paths = m.paths
    ensure_dir(CADDY_SITES)
    ensure_access_log(paths)
    if write_file(CADDY_DROPIN, CADDY_DROPIN_TEXT):
        run(["systemctl", "daemon-reload"])
    ensure_app_user(paths.app, "caddy")  # Caddy reads the app's sockets and static files
    cert, key = (Path(f) for f in (m.request.cert, m.request.key))
    if m.request.cert:
        ensure_dir(paths.caddy_cert[0].parent, mode=0o750, group="caddy")
        write_file(paths.caddy_cert[0], cert.read_bytes(), mode=0o644)
        write_file(paths.caddy_cert[1], key.read_bytes(), mode=0o640, group="caddy")
    write_file(CADDYFILE, m.files[f"caddyfile_{ports}"])  # (Caddy validates both at once)
    # the URL prefixes the live release's settings gave Apache's site, for Caddy's
    served = apache_site.url_prefixes_of(paths.apache_site.read_text(), paths)
    unused = "/.onebox-not-served-here/"
    prefixes = {"static_url": unused, "media_url": unused, **served}
    write_file(paths.caddy_site, Template(m.files[f"site_{ports}"]).safe_substitute(prefixes))
    check = caddy_validate()
    if check.returncode != 0:
        raise AgentError(
            "Caddy rejected onebox's configuration for the move; Apache serves as before",
            output=(check.stdout + check.stderr)[-2000:],
        )


def start_caddy(m: Move) -> None:
    caddy_files(m, "moving")
    run(["systemctl", "restart", "caddy"], what="starting Caddy on the move ports")


def stop_caddy(m: Move) -> str:
    run(["systemctl", "stop", "caddy"], check=False)
    return "; Caddy stopped again"


def wait_for_site(m: Move, proxy: str, port: int = 443, within: float = 20) -> None:
    """Until the site answers 200 through the local proxy on `port`; else an error that
    names what answered and where to look."""
    deadline = time.monotonic() + within
    while True:
        answer = site_check.through_proxy(m.request.address, m.request.health_path, port)
        if answer == 200:
            return
        if time.monotonic() > deadline:
            unit = "caddy" if proxy == "Caddy" else "apache2"
            raise AgentError(
                f"https://{m.request.address}:{port}{m.request.health_path} through {proxy} "
                f"answers {answer} after {within:.0f}s",
                hint=f"`journalctl -u {unit}` on the server says why",
            )
        time.sleep(0.05)


def wait_until_idle(ports: tuple[int, ...], within: float) -> int:
    """Until no connection is open on `ports`, or `within` seconds; those still open."""
    deadline = time.monotonic() + within
    while (left := held_connections(ports)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def check_caddy(m: Move) -> str:
    """The site through Caddy on its move port, as a visitor would ask it."""
    wait_for_site(m, "Caddy", MOVE_PORTS[443], within=30)
    return f"https://{m.request.address}:{MOVE_PORTS[443]}{m.request.health_path}: 200"


def redirect_rules() -> str:
    ports = "; ".join(f"tcp dport {a} redirect to :{b}" for a, b in MOVE_PORTS.items())
    return (
        f"table {MOVE_TABLE} {{\n  chain prerouting {{\n"
        f"    type nat hook prerouting priority dstnat; policy accept;\n    {ports}\n  }}\n}}\n"
    )


def redirect_on(m: Move) -> None:
    run(["nft", "-f", "-"], input=redirect_rules(), what="redirecting new connections")
    # onebox's firewall drops what is not for 22/80/443: let the redirected packets in
    listed = run(["nft", "-a", "list", "chain", "inet", "onebox", "input"], check=False)
    if listed.returncode == 0:
        run(["nft", "insert", "rule", "inet", "onebox", "input", "ct", "status", "dnat", "accept"])
        again = run(["nft", "-a", "list", "chain", "inet", "onebox", "input"]).stdout
        found = re.search(r"ct status dnat accept # handle (\d+)", again)
        m.accept_rule = found.group(1) if found else ""


def redirect_off(m: Move) -> str:
    run(["nft", "delete", "table", *MOVE_TABLE.split()], check=False)
    if m.accept_rule:
        rule = ["nft", "delete", "rule", "inet", "onebox", "input", "handle", m.accept_rule]
        run(rule, check=False)
    return ""


def held_connections(ports: tuple[int, ...]) -> int:
    """Established connections served on these local ports (the redirect moves new ones
    to the move ports, so these are the old proxy's)."""
    where = " or ".join(f"sport = :{p}" for p in ports)
    out = run(["ss", "-Htn", "state", "established", f"( {where} )"], check=False).stdout
    return len([line for line in out.splitlines() if line.strip()])


def drain_apache(m: Move) -> str:
    drain(m.paths)
    left = wait_until_idle((80, 443), DRAIN_WAIT)
    return f"{left} connection(s) still open after {DRAIN_WAIT:.0f}s" if left else ""


def undrain_apache(m: Move) -> str:
    return undrain(m.paths)


def stop_apache(m: Move) -> None:
    run(["systemctl", "stop", "apache2"], timeout=120, what="stopping Apache")
    run(["systemctl", "disable", "apache2"], check=False)


def start_apache_again(m: Move) -> str:
    run(["systemctl", "enable", "apache2"], check=False)
    run(["systemctl", "start", "apache2"], check=False)
    return "; Apache started again"


def caddy_takes_the_ports(m: Move) -> None:
    """Caddy restarted on 80 and 443, while new connections wait a moment: Caddy drains
    first (no kept-alive connection is left idle to be cut), then new connections are
    held (their SYN dropped: the client sends it again), the requests in flight finish,
    Caddy restarts with onebox's usual configuration, the redirect goes, and the held
    connections come in."""
    drain(m.paths)
    time.sleep(1.5)
    hold_new_connections(m)
    wait_until_idle(tuple(MOVE_PORTS.values()), 1)  # (the rest in flight: the restart waits)
    caddy_files(m, "normal")
    run(["systemctl", "restart", "caddy"], what="restarting Caddy on ports 80 and 443")
    redirect_off(m)
    wait_for_site(m, "Caddy")
    release_connections(m)
    undrain(m.paths)


def caddy_back_beside(m: Move) -> str:
    """(the undo) Caddy on the move ports again, the held connections let in."""
    caddy_files(m, "moving")
    run(["systemctl", "restart", "caddy"], check=False)
    release_connections(m)
    return ""


def finish_to_caddy(m: Move) -> None:
    apache_site.record_front(m.paths, proxy="caddy")
    emit("log", text="Caddy serves the site on 80 and 443; Apache is stopped and disabled")


TO_CADDY: list[Step[Move]] = [
    Step("the site is onebox's release behind Apache", check_can_move),
    Step("caddy installed (not started)", install_caddy, idempotent=True),
    Step("caddy beside apache (ports 8080, 8443)", start_caddy, undo=stop_caddy),
    Step("the site through caddy", check_caddy),
    Step("new connections to caddy", redirect_on, undo=redirect_off),
    Step("apache drains", drain_apache, undo=undrain_apache),
    Step("apache stopped", stop_apache, undo=start_apache_again),
    Step("caddy on 80 and 443", caddy_takes_the_ports, undo=caddy_back_beside),
    Step("recorded", finish_to_caddy),
]


# ----------------------------------------------------------------- back to Apache


def check_can_go_back(m: Move) -> None:
    front = apache_site.front(m.paths)
    if front["proxy"] != "caddy" or not front["apache"].get("vhost"):
        raise AgentError(
            f"{m.paths.app} was not moved from Apache to Caddy here: there is no way back",
            hint="`onebox adopt --switch-to apache` undoes an `--switch-to caddy` of this app",
            code=ExitCode.CONFIG,
        )
    if front["confirmed"]:
        raise AgentError(
            "the move to Caddy was confirmed (`onebox adopt --confirm`): Apache is masked",
            hint="`systemctl unmask apache2` on the server first, if you really go back",
            code=ExitCode.CONFIG,
        )


def drain_caddy(m: Move) -> str:
    drain(m.paths)
    time.sleep(2)  # each kept-alive client's next answer closes its connection
    return ""


def hold_new_connections(m: Move, ports: tuple[int, ...] = (80, 443)) -> None:
    """New connections on `ports` wait: their SYN is dropped (not refused), and the client
    sends it again a second later, when the proxy listens. (Not the server's own, on lo.)"""
    listed = ", ".join(map(str, ports))
    rules = (
        f"table {HOLD_TABLE} {{\n  chain prerouting {{\n"
        "    type filter hook prerouting priority -300; policy accept;\n"
        f'    iifname != "lo" tcp dport {{ {listed} }} tcp flags & (syn | ack) == syn drop\n'
        "  }\n}\n"
    )
    run(["nft", "-f", "-"], input=rules, what="holding new connections")


def release_connections(m: Move) -> str:
    run(["nft", "delete", "table", *HOLD_TABLE.split()], check=False)
    return ""


def caddy_to_apache(m: Move) -> None:
    wait_until_idle((80, 443, *MOVE_PORTS.values()), 1)  # (the rest in flight: the stop waits)
    run(["systemctl", "stop", "caddy"], timeout=120, what="stopping Caddy")
    run(["systemctl", "disable", "caddy"], check=False)
    run(["systemctl", "enable", "apache2"], check=False)
    run(["systemctl", "start", "apache2"], timeout=120, what="starting Apache")
    wait_for_site(m, "Apache")


def restart_caddy(m: Move) -> str:
    run(["systemctl", "stop", "apache2"], check=False)
    run(["systemctl", "enable", "caddy"], check=False)
    run(["systemctl", "start", "caddy"], check=False)
    return "; Caddy serves again"


def finish_to_apache(m: Move) -> None:
    release_connections(m)
    undrain(m.paths)
    apache_site.record_front(m.paths, proxy="apache")
    emit("log", text="Apache serves the site again (through onebox's releases)")


TO_APACHE: list[Step[Move]] = [
    Step("the site was moved from apache", check_can_go_back),
    Step("caddy drains", drain_caddy, undo=lambda m: undrain(m.paths)),
    Step("new connections wait", hold_new_connections, undo=release_connections),
    Step("caddy stopped, apache started", caddy_to_apache, undo=restart_caddy),
    Step("new connections to apache", finish_to_apache),
]


def confirm(m: Move) -> dict[str, Any]:
    if apache_site.front(m.paths)["proxy"] != "caddy":
        raise AgentError(
            "the site is not on Caddy here: nothing to confirm",
            hint="`onebox adopt --switch-to caddy` moves it there first",
            code=ExitCode.CONFIG,
        )
    run(["systemctl", "mask", "apache2"], check=False)
    apache_site.record_front(m.paths, confirmed=True)
    return {"confirmed": True}


def move(request: ProxyMoveRequest) -> dict[str, Any]:
    m = Move(request=request, paths=AppPaths(request.app))
    with deploy_lock(m.paths.lock, request.by, f"the move to {request.to}"):
        if request.to == "confirm":
            return confirm(m)
        run_steps(TO_CADDY if request.to == "caddy" else TO_APACHE, m)
    return {"proxy": request.to}

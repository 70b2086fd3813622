"""`onebox audit` from the outside: what the machine running onebox can reach.

The server-side checks live in the agent (agent/audit.py). These are the ones that only
mean something from elsewhere: which TCP ports answer, and what the live site's TLS and
response headers are. Bounded: each port is tried once, 1 s at most, 500 at a time.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl

Check = dict[str, str]

# Ports that are open by mistake more often than others: remote shells and desktops,
# databases and caches, message brokers, admin and dev servers.
COMMON_PORTS = sorted(
    {
        21,
        22,
        23,
        25,
        53,
        80,
        110,
        111,
        135,
        139,
        143,
        443,
        445,
        465,
        587,
        631,
        873,
        993,
        995,
        1433,
        1521,
        2049,
        2375,
        2376,
        2379,
        3000,
        3306,
        3389,
        4369,
        5000,
        5432,
        5601,
        5672,
        5900,
        5984,
        6379,
        6443,
        7000,
        8000,
        8008,
        8080,
        8081,
        8443,
        8888,
        9000,
        9090,
        9092,
        9100,
        9200,
        9300,
        11211,
        15672,
        27017,
        50000,
    }
)
HSTS_MIN = 31536000  # one year


def result(name: str, ok: bool | None, detail: str, fix: str = "") -> Check:
    status = "pass" if ok else ("warn" if ok is None else "fail")
    return {"name": name, "status": status, "detail": detail, "fix": "" if ok else fix}


def open_ports(address: str, ports: list[int], workers: int = 500) -> list[int]:
    import asyncio  # (here: only the audit scans, and it costs each command 30 ms)

    async def scan() -> list[int]:
        queue = iter(ports)
        found: list[int] = []

        async def worker() -> None:
            for port in queue:  # shared: each port is tried once
                try:
                    connecting = asyncio.open_connection(address, port)
                    _, writer = await asyncio.wait_for(connecting, 1)
                except (TimeoutError, OSError):
                    continue
                writer.close()
                found.append(port)

        await asyncio.gather(*(worker() for _ in range(min(workers, len(ports)))))
        return sorted(found)

    return asyncio.run(scan())


def check_ports(address: str, allowed: set[int], everything: bool) -> Check:
    ports = list(range(1, 65536)) if everything else sorted(set(COMMON_PORTS) | allowed)
    found = open_ports(address, ports)
    extra = [port for port in found if port not in allowed]
    scope = "all 65,535 TCP ports" if everything else f"{len(ports)} common TCP ports"
    return result(
        "only SSH, HTTP and HTTPS answer from outside",
        not extra,
        f"{scope} tried from here; open: {', '.join(map(str, found)) or 'none'}",
        f"close {', '.join(map(str, extra))}: `onebox setup` restores the firewall; a port you "
        "mean to open goes in [security] open_ports",
    )


def check_site(address: str, server_name: str) -> list[Check]:
    """The live site's TLS version and security headers (certificate trust is not the
    question here: a private CA is fine)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        connection = _SiteConnection(address, server_name, context)
        connection.request("GET", "/", headers={"Host": server_name, "User-Agent": "onebox-audit"})
        response = connection.getresponse()
        version = connection.sock.version() if connection.sock else "?"
        headers = {k.lower(): v for k, v in response.getheaders()}
        connection.close()
    except OSError as exc:
        return [result("the site answers over HTTPS", False, str(exc), "`onebox deploy`")]
    return [
        result(
            "TLS 1.2 or newer",
            version in ("TLSv1.2", "TLSv1.3") and not old_tls_accepted(address, server_name),
            f"negotiated {version}; TLS 1.0/1.1 refused",
            "Caddy refuses TLS before 1.2 by default: check a Caddyfile of your own",
        ),
        *check_headers(headers),
    ]


class _SiteConnection(http.client.HTTPSConnection):
    """HTTPS to the server's address, naming the site (SNI) as a browser would."""

    def __init__(self, address: str, server_name: str, context: ssl.SSLContext) -> None:
        super().__init__(server_name, 443, timeout=10, context=context)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, 443), self.timeout)
        # (http.client keeps the context private, and typeshed does not declare it)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def old_tls_accepted(address: str, server_name: str) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return False  # this machine's OpenSSL cannot even offer them
    try:
        with (
            socket.create_connection((address, 443), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def check_headers(headers: dict[str, str]) -> list[Check]:
    hsts = re.search(r"max-age=(\d+)", headers.get("strict-transport-security", ""))
    frames = headers.get("x-frame-options", "") or (
        "frame-ancestors" in headers.get("content-security-policy", "")
    )
    server = headers.get("server", "")
    fix = "onebox's Caddy site sends it: check a site template of your own"
    return [
        result(
            "HSTS",
            hsts is not None and int(hsts.group(1)) >= HSTS_MIN,
            headers.get("strict-transport-security", "missing"),
            fix,
        ),
        result(
            "X-Content-Type-Options: nosniff",
            headers.get("x-content-type-options", "").lower() == "nosniff",
            headers.get("x-content-type-options", "missing"),
            fix,
        ),
        result(
            "Referrer-Policy",
            bool(headers.get("referrer-policy")),
            headers.get("referrer-policy", "missing"),
            fix,
        ),
        result("a frame policy", bool(frames), str(frames or "missing"), fix),
        result(
            "no server version in the headers",
            not re.search(r"\d", server),
            f"Server: {server}" if server else "no Server header",
            fix,
        ),
    ]

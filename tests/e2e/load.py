"""Steady traffic through Caddy while something changes the site, counting every failure.

Four kinds of client run side by side: GET and POST, each on one kept-alive connection
and on a new connection per request. Every request is checked (status and, for a POST,
the redirect the form answers with); an exception, a reset, a wrong status is a failure.
Bounded: at most `rate` requests a second per client, `limit` seconds, and 20,000
requests in all. Traffic goes only to the practice server's address.
"""

from __future__ import annotations

import http.client
import itertools
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

MAX_REQUESTS = 20_000
# How a server's close of an idle kept-alive connection meets the next request on it.
CLOSED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to the server's address, with the site's name for SNI and certificate checks."""

    def __init__(self, address: str, domain: str, context: ssl.SSLContext) -> None:
        super().__init__(domain, 443, timeout=15, context=context)
        self.address, self.domain, self.tls = address, domain, context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, 443), timeout=self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.domain)


@dataclass
class Load:
    address: str
    domain: str
    ca: Path
    rate: float = 25
    limit: float = 180
    # What is asked (examples/mvp's by default): GET get_path answers 200; a POST of the
    # form to post_path answers post_answer (status, Location), with its CSRF token
    # taken from the home page unless csrf is off.
    get_path: str = "/health/"
    post_path: str = "/"
    post_answer: tuple[int, str] = (302, "/")
    csrf: bool = True
    # As a browser does: a request on a reused kept-alive connection that the server
    # closed before answering (an idle connection closed by a reload) is sent once more
    # on a new connection. Each such close is still counted, in `closed`.
    retry_closed: bool = False
    closed: list[str] = field(default_factory=list)
    ok: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, of the good answers
    answered_at: list[float] = field(default_factory=list)  # time.monotonic() of each
    failed_at: list[float] = field(default_factory=list)  # when each failure began

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(cafile=str(self.ca))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._threads: list[threading.Thread] = []
        self.csrf_cookie, self.csrf_token = self._csrf() if self.csrf else ("", "")

    def _csrf(self) -> tuple[str, str]:
        conn = _Connection(self.address, self.domain, self.context)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie") or "").group(1)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
        return cookie, token

    def start(self, settle: float = 1) -> Load:
        for method in ("GET", "POST"):
            for keep_alive in (True, False):
                thread = threading.Thread(
                    target=self._client, args=(method, keep_alive), daemon=True
                )
                thread.start()
                self._threads.append(thread)
        time.sleep(settle)
        return self

    def stop(self, settle: float = 1) -> None:
        time.sleep(settle)
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Load:
        return self.start()  # a second of steady state before the change

    def __exit__(self, *exc: object) -> None:
        self.stop()  # and one after it

    @property
    def longest_gap(self) -> float:
        """The longest time in which no client got a good answer (a stall)."""
        times = sorted(self.answered_at)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    @property
    def total(self) -> int:
        return sum(self.ok.values())

    def _request(self, conn: _Connection, method: str, n: int) -> tuple[int, str]:
        headers = {"Host": self.domain}
        body = None
        if method == "POST":
            body = urlencode(
                {
                    "csrfmiddlewaretoken": self.csrf_token,
                    "name": "load",
                    "message": f"load test entry {n}",
                }
            )
            headers |= {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={self.csrf_cookie}",
                "Origin": f"https://{self.domain}",
                "Referer": f"https://{self.domain}/",
            }
        path = self.get_path if method == "GET" else self.post_path
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""

    def _client(self, method: str, keep_alive: bool) -> None:
        kind = f"{method} {'kept-alive' if keep_alive else 'new connection'}"
        deadline = time.monotonic() + self.limit
        conn = None
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self._sent >= MAX_REQUESTS:
                    return
                self._sent += 1
            n += 1
            started = time.monotonic()
            try:
                reused = conn is not None and keep_alive
                if conn is None or not keep_alive:
                    conn = _Connection(self.address, self.domain, self.context)
                try:
                    status, location = self._request(conn, method, n)
                except CLOSED as exc:
                    if not (reused and self.retry_closed):
                        raise
                    with self._lock:
                        self.closed.append(f"{kind}: {exc!r}")
                    conn = _Connection(self.address, self.domain, self.context)
                    status, location = self._request(conn, method, n)
                answer = (status, location if status in (301, 302, 303) else "")
                good = status == 200 if method == "GET" else answer == self.post_answer
                with self._lock:
                    if good:
                        self.ok[kind] = self.ok.get(kind, 0) + 1
                        self.latencies.append(time.monotonic() - started)
                        self.answered_at.append(time.monotonic())
                    else:
                        self.failures.append(f"{kind}: HTTP {status}")
                        self.failed_at.append(started)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(f"{kind}: {exc!r}")
                    self.failed_at.append(started)
                conn = None
            if not keep_alive and conn is not None:
                conn.close()
            time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))

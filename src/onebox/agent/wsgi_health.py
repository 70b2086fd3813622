"""onebox's built-in health check, in front of the app's own WSGI application.

Copied into every release as `.onebox/onebox_wsgi.py`; gunicorn serves
`onebox_wsgi:application`, and ONEBOX_WSGI names the app's ("mvp.wsgi:application").
`GET /.onebox/health` answers 200 once Django is set up and every configured database
answers `SELECT 1`, 503 otherwise (the reason goes to the app's log, not to the client).
Every other request reaches the app with REMOTE_ADDR set to the client's address (see
forwarded_client).

Importing the app's module here, at worker start, means a release that cannot import
never boots: onebox sees the crash before any traffic moves.

Once traffic has moved to the other slot (a deploy, a rollback), every answer of this
one closes its connection: the proxy keeps connections to gunicorn open, and those it
opened before the switch would otherwise go on reaching this release.

It also reports each failed Django login (the admin's and any form that uses
`django.contrib.auth.authenticate`) to the journal as `onebox-auth`, with the client's
address; fail2ban's onebox-django jail bans an address that keeps failing.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import socket
import sys
import traceback

HEALTH_PATH = "/.onebox/health"
# The applied migrations this release's code does not know, as JSON: what `onebox
# rollback` to a running standby asks it, instead of starting Django once more. Only on
# the slot's own socket: Caddy and Apache add X-Forwarded-For to every request they pass.
MIGRATIONS_PATH = "/.onebox/migrations"


def load(spec: str):
    """The app's own application object, from "module:attribute"."""
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute or "application")


# (the ASGI wrapper imports this module for its check, with no WSGI app to load)
app = load(os.environ["ONEBOX_WSGI"]) if "ONEBOX_WSGI" in os.environ else None


JOURNAL_SOCKET = "/run/systemd/journal/socket"


def report_failed_login(sender, credentials=None, request=None, **kwargs) -> None:
    """A `user_login_failed` receiver: one journal entry per failure, never the username
    (people type passwords into that field)."""
    address = client_address(request)
    if address:
        journal(f"failed login from {address}", ONEBOX_CLIENT=address)


def client_address(request) -> str:
    """The address Caddy saw. Caddy sets X-Forwarded-For to it (dropping what a client
    sent, unless trusted_proxies says otherwise); the last entry is Caddy's either way."""
    if request is None:
        return ""
    return forwarded_client(request.META) or _address(request.META.get("REMOTE_ADDR", ""))


def journal(message: str, **fields: str) -> None:
    """An entry with its own identifier, written with the journal's native protocol: no
    line the app prints (say, a logged request path) can pass for one."""
    entry = {"MESSAGE": message, "SYSLOG_IDENTIFIER": "onebox-auth", "PRIORITY": "5", **fields}
    data = "".join(f"{key}={value}\n" for key, value in entry.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(data, JOURNAL_SOCKET)
    except OSError:
        print(f"onebox: {message}", file=sys.stderr, flush=True)


def report_request_exception(sender, request=None, **kwargs) -> None:
    """A request that raised (the 500 page): its traceback to the app's log. With DEBUG
    off and no ADMINS, Django's default logging sends it nowhere, and neither `onebox
    logs` nor a refused deploy could say why a page fails."""
    where = f"{request.method} {request.path}" if request is not None else "a request"
    print(f"onebox: {where} raised:\n{traceback.format_exc()}", file=sys.stderr, flush=True)


try:
    from django.contrib.auth.signals import user_login_failed
    from django.core.signals import got_request_exception
except ImportError:  # not a Django app after all: nothing to report
    pass
else:
    user_login_failed.connect(report_failed_login, dispatch_uid="onebox-failed-login")
    got_request_exception.connect(report_request_exception, dispatch_uid="onebox-exception")


def forwarded_client(environ) -> str:
    """The client's address from the last X-Forwarded-For entry, the one Caddy wrote.

    gunicorn listens on a Unix socket that only Caddy can reach, so REMOTE_ADDR is empty
    and this header is the proxy's word: Caddy replaces whatever a client sent in it
    (unless trusted_proxies says otherwise, and then it appends), so the last entry is
    never the client's own claim."""
    return _address(environ.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1])


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return ""


# The unit names this slot's socket and the one the proxy dials (a hard link to the
# live slot's socket, see switch.py).
SLOT_SOCKET = os.environ.get("ONEBOX_SLOT_SOCKET", "")
LIVE_SOCKET = os.environ.get("ONEBOX_LIVE_SOCKET", "")


def serving_live() -> bool:
    """Whether the proxy's new connections reach this slot (two stat calls, ~2 µs)."""
    if not (SLOT_SOCKET and LIVE_SOCKET):
        return True
    try:
        return os.stat(LIVE_SOCKET).st_ino == os.stat(SLOT_SOCKET).st_ino
    except OSError:  # (no live socket yet: the first start)
        return True


def close_after(start_response) -> None:
    """Make gunicorn answer `Connection: close` (its Response, whose method start_response
    is; an app's own Connection header would be dropped as hop-by-hop)."""
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if force_close is not None:
        force_close()


def application(environ, start_response):
    # (Django's request.META is this dict: the app sees the client's address)
    if not environ.get("REMOTE_ADDR"):
        environ["REMOTE_ADDR"] = forwarded_client(environ)
    if not serving_live():
        close_after(start_response)
    path = environ.get("PATH_INFO")
    if path == MIGRATIONS_PATH and not environ.get("HTTP_X_FORWARDED_FOR"):
        status, body = _migrations()
    elif path != HEALTH_PATH:
        assert app is not None, "ONEBOX_WSGI names the app (the unit sets it)"
        return app(environ, start_response)
    else:
        status, body = _check()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def _check() -> tuple[str, bytes]:
    from django.db import close_old_connections, connections

    try:
        for alias in connections:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
    except Exception as exc:  # any driver's error: the database does not answer
        print(f"onebox health check: database {alias!r}: {exc}", file=sys.stderr, flush=True)
        return "503 Service Unavailable", b"database unavailable\n"
    finally:
        # No request signals ran: close what CONN_MAX_AGE would have closed after a request.
        close_old_connections()
    return "200 OK", b"ok\n"


def _migrations() -> tuple[str, bytes]:
    import json

    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    try:
        loader = MigrationLoader(connection, ignore_no_migrations=True)
        newer = set(loader.applied_migrations) - set(loader.disk_migrations)
    except Exception as exc:  # the database does not answer: onebox asks the slow way
        print(f"onebox migrations: {exc}", file=sys.stderr, flush=True)
        return "503 Service Unavailable", b"{}"
    finally:
        connection.close()
    names = sorted(f"{app}.{name}" for app, name in newer)
    return "200 OK", json.dumps({"newer": names}).encode()

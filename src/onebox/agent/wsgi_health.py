"""onebox's built-in health check, in front of the app's own WSGI application.

Copied into every release as `.onebox/onebox_wsgi.py`; gunicorn serves
`onebox_wsgi:application`, and ONEBOX_WSGI names the app's ("mvp.wsgi:application").
`GET /.onebox/health` answers 200 once Django is set up and every configured database
answers `SELECT 1`, 503 otherwise (the reason goes to the app's log, not to the client).
Every other request reaches the app untouched.

Importing the app's module here, at worker start, means a release that cannot import
never boots: onebox sees the crash before any traffic moves.
"""

from __future__ import annotations

import importlib
import os
import sys

HEALTH_PATH = "/.onebox/health"

_module, _, _attribute = os.environ["ONEBOX_WSGI"].partition(":")
app = getattr(importlib.import_module(_module), _attribute or "application")


def application(environ, start_response):
    if environ.get("PATH_INFO") != HEALTH_PATH:
        return app(environ, start_response)
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

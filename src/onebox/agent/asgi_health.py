"""onebox's built-in health check, in front of the app's own ASGI application.

Copied into every release as `.onebox/onebox_asgi.py`; with `[app] asgi`, gunicorn runs
uvicorn's worker on `onebox_asgi:application`, and ONEBOX_ASGI names the app's
("chat.asgi:application"). `GET /.onebox/health` answers as onebox_wsgi's does (Django
set up, every database answering); every other request and websocket goes to the app.
The client's address comes from Caddy's X-Forwarded-For through uvicorn's proxy headers
(gunicorn's --forwarded-allow-ips, as for WSGI).

At a switch the old slot stops gracefully: requests in flight finish (up to [deploy]
drain), and uvicorn closes each open websocket with the close code 1012 ("service
restart"), so clients reconnect, and reach the new release.
"""

from __future__ import annotations

import asyncio
import os

from onebox_wsgi import HEALTH_PATH, _check, load, serving_live

app = load(os.environ["ONEBOX_ASGI"])

CLOSE = (b"connection", b"close")


async def application(scope, receive, send):
    if scope["type"] == "http" and not serving_live():
        send = closing(send)  # traffic moved on: the proxy's connection should too
    if scope["type"] != "http" or scope.get("path") != HEALTH_PATH:
        return await app(scope, receive, send)
    status, body = await asyncio.to_thread(_check)  # Django's database calls are blocking
    await send(
        {
            "type": "http.response.start",
            "status": int(status.split()[0]),
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def closing(send):
    """`send` with `Connection: close` on the response (uvicorn closes after it)."""

    async def send_closing(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), CLOSE]}
        await send(message)

    return send_closing

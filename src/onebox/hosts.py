"""The hosts of a project and their roles: the app's host ([server] host) and, with
[servers] db, the database's host, whose address the app reaches it at."""

from __future__ import annotations

import functools
import re
import socket

from onebox.agent.database import db_name
from onebox.agent.db_host import PORT
from onebox.errors import ConfigError


def address_of(spec: str) -> str:
    """Where other hosts reach `spec` (user@host:port, or sandbox:NAME): its host part,
    or the practice server's address."""
    if spec.startswith("sandbox:"):
        from onebox import sandbox

        return sandbox.load(spec.removeprefix("sandbox:")).target().host
    host = spec.rpartition("@")[2]
    bracketed = re.fullmatch(r"\[(.+)\](?::\d+)?", host)  # [2001:db8::5]:22
    if bracketed:
        return bracketed.group(1)
    with_port = re.fullmatch(r"([^:]+):\d+", host)
    return with_port.group(1) if with_port else host


def database_url(app: str, db_spec: str) -> str:
    """The app's database on its database host (the password is a secret: not here)."""
    name = db_name(app)
    host = address_of(db_spec)
    return f"postgres://{name}@{f'[{host}]' if ':' in host else host}:{PORT}/{name}"


@functools.cache  # (each render of the units asks again: once per command is enough)
def ip_addresses(spec: str) -> list[str]:
    """The addresses a host's connections come from, for the firewall and pg_hba.conf
    of another: its address, or what its name resolves to here."""
    host = address_of(spec)
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(
            f"{host} does not resolve to an address: {exc}",
            hint="give the host's address in onebox.toml (the one the other hosts reach it at)",
        ) from None
    return sorted({str(entry[4][0]) for entry in found})

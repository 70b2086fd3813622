"""A database host ([servers] db): PostgreSQL for the app hosts, over the network.

Reachable only from the app hosts (the firewall by address, firewall.py, and pg_hba.conf
by address, for the app's own role and database), only over TLS, with a certificate
signed by a CA this host keeps (its key root's alone): the app hosts get the CA's
certificate and check the server's against it and its address (sslmode=verify-full).
The app's password is made here and kept root-only; `onebox setup` carries it to the
app hosts' secrets without printing it (`onebox-agent db-password APP`).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import sys
import tempfile
from pathlib import Path

from .database import db_name, pg_literal
from .db_postgresql import PostgreSQL
from .paths import DB_CA_CERT, DB_CA_KEY, DB_HOST, PG_TLS, POSTGRESQL_ETC, AppPaths
from .protocol import AgentError
from .system import ensure_dir, fix_mode, run, write_file

PORT = 5432
SERVER_KEY, SERVER_CERT = PG_TLS / "server.key", PG_TLS / "server.crt"
RENEW_BEFORE = 30 * 86400  # a server certificate this close to its end is issued anew
CONF_NAME = "onebox.conf"
CONF = f"""\
# Written by `onebox setup` ([servers] db): the app hosts connect over the network, with
# TLS only (pg_hba.conf admits them by address, `hostssl`), and the firewall lets only
# them reach port {PORT}.
listen_addresses = '*'
ssl = on
ssl_cert_file = '{SERVER_CERT}'
ssl_key_file = '{SERVER_KEY}'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
"""


def cluster_dir() -> Path:
    """/etc/postgresql/VERSION/main: the cluster Debian's package made."""
    found = sorted(POSTGRESQL_ETC.glob("*/main/postgresql.conf"))
    if not found:
        raise AgentError(
            "PostgreSQL's cluster is missing (no /etc/postgresql/*/main)",
            hint="`pg_lsclusters` on the database host lists the clusters; run `onebox "
            "setup` again once `apt-get install postgresql` made one",
        )
    return found[-1].parent


def ensure(app: str, address: str, clients: list[str]) -> bool:
    """Everything the app hosts need of this host; True if anything changed."""
    run(["systemctl", "start", "postgresql"], check=False)
    changed = ensure_tls(address)
    folder = cluster_dir()
    conf_changed = write_file(folder / "conf.d" / CONF_NAME, CONF)
    hba_changed = ensure_access(folder / "pg_hba.conf", app, clients)
    if changed or conf_changed:  # (listen_addresses and the certificate: a restart)
        run(["systemctl", "restart", "postgresql"], what="restarting PostgreSQL")
    elif hba_changed:
        run(["systemctl", "reload", "postgresql"], what="reloading PostgreSQL")
    return ensure_role(app) or changed or conf_changed or hba_changed


def ensure_role(app: str) -> bool:
    paths = AppPaths(app)
    ensure_dir(DB_HOST, mode=0o700)
    created = not paths.db_host_password.is_file()
    if created:
        write_file(paths.db_host_password, secrets.token_urlsafe(24), mode=0o600)
    password = paths.db_host_password.read_text().strip()
    engine = PostgreSQL(paths, "", {"DATABASE_PASSWORD": password})
    changed = engine._provision({"DATABASE_PASSWORD": password}) or created
    # The verification's scratch database, the app's own: its role creates none here.
    scratch = engine.scratch_name()
    if not engine.sql(f"SELECT 1 FROM pg_database WHERE datname = {pg_literal(scratch)}"):
        engine.create_scratch()
        changed = True
    return changed


def hba_block(app: str, clients: list[str]) -> str:
    name = db_name(app)
    scratch = PostgreSQL(AppPaths(app), "", {}).scratch_name()  # (the verification's)
    lines = [f"# onebox {app} begin: the app hosts, over TLS, with the app's password"]
    for client in clients:
        network = ipaddress.ip_network(client)  # (a bare address: its /32 or /128)
        lines.append(f'hostssl "{name}","{scratch}" "{name}" {network} scram-sha-256')
    lines.append(f"# onebox {app} end")
    return "\n".join(lines) + "\n"


def ensure_access(hba: Path, app: str, clients: list[str]) -> bool:
    """The app's block first in pg_hba.conf (the first matching line decides)."""
    text = hba.read_text()
    begin, end = f"# onebox {app} begin", f"# onebox {app} end\n"
    if begin in text:
        start = text.index(begin)
        stop = text.index(end, start) + len(end)
        text = text[:start] + text[stop:]
    wanted = hba_block(app, clients) + text
    return write_file(hba, wanted, mode=0o640, owner="postgres", group="postgres")


def ensure_tls(address: str) -> bool:
    """The CA (made once) and a server certificate for `address` (made anew when the
    address changed or its end is near)."""
    ensure_dir(DB_HOST, mode=0o700)
    changed = False
    if not (DB_CA_KEY.is_file() and DB_CA_CERT.is_file()):
        openssl(
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(DB_CA_KEY), "-out", str(DB_CA_CERT), "-days", "3650",
            "-subj", "/CN=onebox database CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        fix_mode(DB_CA_KEY, 0o600, 0, 0)
        changed = True
    ensure_dir(PG_TLS, mode=0o700, owner="postgres", group="postgres")
    if changed or not certificate_fits(address):
        issue_server_certificate(address)
        changed = True
    return changed


def subject_name(address: str) -> str:
    try:
        ipaddress.ip_address(address)
        return f"IP:{address}"
    except ValueError:
        return f"DNS:{address}"


def certificate_fits(address: str) -> bool:
    if not SERVER_CERT.is_file() or not SERVER_KEY.is_file():
        return False
    names = run(
        ["openssl", "x509", "-in", str(SERVER_CERT), "-noout", "-ext", "subjectAltName"],
        check=False,
    ).stdout
    wanted = subject_name(address).replace("IP:", "IP Address:")
    lasting = run(
        ["openssl", "x509", "-in", str(SERVER_CERT), "-noout", "-checkend", str(RENEW_BEFORE)],
        check=False,
    )
    return wanted in names and lasting.returncode == 0


def issue_server_certificate(address: str) -> None:
    with tempfile.TemporaryDirectory(dir=DB_HOST) as scratch:
        key, request, extensions = (Path(scratch) / n for n in ("key", "csr", "ext"))
        extensions.write_text(
            f"subjectAltName={subject_name(address)}\nextendedKeyUsage=serverAuth\n"
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        )
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(request), "-subj", f"/CN={address}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(request), "-CA", str(DB_CA_CERT), "-CAkey",
            str(DB_CA_KEY), "-set_serial", str(secrets.randbits(63)), "-days", "825",
            "-extfile", str(extensions), "-out", str(Path(scratch) / "crt"),
        )  # fmt: skip
        certificate = (Path(scratch) / "crt").read_text()
        write_file(SERVER_KEY, key.read_text(), mode=0o600, owner="postgres", group="postgres")
        write_file(SERVER_CERT, certificate, mode=0o644, owner="postgres", group="postgres")


def openssl(*args: str) -> None:
    run(["openssl", *args], what="making the database's TLS certificate")


def ca_certificate() -> str:
    return DB_CA_CERT.read_text()


def access(app: str) -> dict[str, str]:
    password = AppPaths(app).db_host_password.read_text().strip()
    return {"ca": ca_certificate(), "password": password}


if __name__ == "__main__":  # `onebox-agent db-access APP` (commands.py)
    print(json.dumps(access(sys.argv[1])))

"""The app's database on the server, one class per engine: provision, dump, load, checksum.

Every engine answers the same questions, so backup, restore and verify are written once:
- `ensure(secrets)`: the server, a database and a user with a generated password, and the
  app's DATABASE_URL (plus DATABASE_NAME/USER/PASSWORD/HOST/PORT) in its secrets;
- `dump(sink)`: a consistent dump written to sink while the app keeps serving, and the
  per-table row counts and checksums of exactly the data in that dump;
- `load(path, scratch=False)`: replace the app's data (or fill a scratch database) with a dump;
- `checksums(scratch)`: the same figures, read from a database, to compare with a dump's.
Nothing here puts a password on a command line: SQL that holds one goes through stdin,
clients get theirs from the environment (MYSQL_PWD, PGPASSWORD) of their own process.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .paths import AppPaths
from .protocol import AgentError, ExitCode
from .system import BASE_ENV, as_user, tail

Sink = Callable[[bytes], None]
Checksums = dict[str, list[int]]  # table -> [rows, checksum]
CHUNK = 1 << 20
END = "ONEBOX-END"


# SQL is sent as text through a client's stdin, so every value in it is quoted here, and
# every name: table and column names come from the app's own migrations, and the agent's
# queries run as the database's superuser.
def pg_literal(value: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings: only ' is special)."""
    _no_nul(value)
    return "'" + value.replace("'", "''") + "'"


def pg_ident(name: str) -> str:
    _no_nul(name)
    return '"' + name.replace('"', '""') + '"'


def my_literal(value: str) -> str:
    """A MariaDB/MySQL string literal (backslash is an escape there, as is ')."""
    _no_nul(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def my_ident(name: str) -> str:
    _no_nul(name)
    return "`" + name.replace("`", "``") + "`"


def _no_nul(text: str) -> None:
    if "\0" in text:
        raise AgentError("a database name or value holds a NUL character", code=ExitCode.CONFIG)


def redact(text: str, *secrets_: str) -> str:
    """An error message with the secrets it may quote (a statement echoed back) masked."""
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "********")
    return text


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "no message"


def engine_for(app: str, config: dict, secrets_: dict[str, str]) -> Engine:
    from .db_mariadb import MariaDB
    from .db_postgresql import PostgreSQL
    from .db_sqlite import SQLite

    kind = {"sqlite": SQLite, "mysql": MariaDB, "postgresql": PostgreSQL}[config["engine"]]
    return kind(AppPaths(app), config.get("url", ""), secrets_)


def db_name(app: str) -> str:
    return app.replace("-", "_")


class Engine:
    name = ""
    dump_file = ""
    packages: list[str] = []

    def __init__(self, paths: AppPaths, url: str, secrets_: dict[str, str]) -> None:
        self.paths, self.url, self.secrets = paths, url, secrets_

    @property
    def app(self) -> str:
        return self.paths.app

    @property
    def external(self) -> bool:
        return bool(self.url)

    scheme = ""
    default_port = 0
    service = ""  # the systemd unit of a local server
    label = ""  # its name for people

    @property
    def database(self) -> str:
        return self.conn["name"] if self.external else db_name(self.app)

    def sql(self, text: str, database: str = "", what: str = "a database query") -> list[list[str]]:
        raise NotImplementedError

    def ensure(self, values: dict[str, str]) -> bool:
        """The connection variables in `values` (the secrets), and the database they name."""
        changed = self._connection_values(values, self.scheme, self.default_port)
        self.secrets = values
        if self.external:
            self.sql("SELECT 1", self.database, what="connecting to the external database")
            return changed
        return self._provision(values) or changed

    def _provision(self, values: dict[str, str]) -> bool:
        raise NotImplementedError

    def connection_hint(self, refused: bool, unreachable: bool) -> str:
        if refused:
            if self.external:
                return (
                    "the database refused the credentials: check [database] url and run "
                    "`onebox env set DATABASE_PASSWORD=...`"
                )
            return "run `onebox setup` again to repair the database user"
        if unreachable:
            if self.external:
                return (
                    "the database server is not reachable: is it up, and is [database] url right?"
                )
            return f"{self.label} is not running: `systemctl status {self.service}` on the server"
        return ""

    def size(self) -> int:
        raise NotImplementedError

    def dump(self, sink: Sink) -> Checksums:
        raise NotImplementedError

    def staging(self) -> Path:
        """Where a dump fetched for a restore is put: somewhere `load` can read it."""
        return self.paths.backup_tmp

    def load(self, path: Path, scratch: bool = False) -> None:
        raise NotImplementedError

    def checksums(self, scratch: bool = False) -> Checksums:
        raise NotImplementedError

    def drop_scratch(self) -> None:
        raise NotImplementedError

    def _connection_values(self, values: dict[str, str], scheme: str, port: int) -> bool:
        """DATABASE_URL and the individual variables, from the config's url or our own user."""
        if self.external:
            parts = urlsplit(self.url)
            password = values.get("DATABASE_PASSWORD", "")
            user, host = unquote(parts.username or ""), parts.hostname or ""
            name, port = parts.path.strip("/"), parts.port or port
        else:
            user = name = db_name(self.app)
            host = "localhost"
            password = values.get("DATABASE_PASSWORD") or secrets.token_urlsafe(24)
        url = f"{scheme}://{quote(user)}:{quote(password, safe='')}@{host}:{port}/{name}"
        tls = self.tls_values()
        if tls:  # (in the URL for dj-database-url and django-environ; libpq reads PG*)
            url += f"?sslmode={tls['PGSSLMODE']}&sslrootcert={tls['PGSSLROOTCERT']}"
        wanted = {
            "DATABASE_URL": url,
            "DATABASE_NAME": name,
            "DATABASE_USER": user,
            "DATABASE_PASSWORD": password,
            "DATABASE_HOST": host,
            "DATABASE_PORT": str(port),
            **tls,
        }
        changed = any(values.get(key) != value for key, value in wanted.items())
        values.update(wanted)
        return changed

    def tls_values(self) -> dict[str, str]:
        """A database host's ([servers] db): TLS, its certificate checked against the CA
        setup brought and against the host's address (libpq's own variables)."""
        if not (self.external and self.scheme == "postgres" and self.paths.database_ca.is_file()):
            return {}
        return {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(self.paths.database_ca)}

    @property
    def conn(self) -> dict[str, str]:
        return {
            key.removeprefix("DATABASE_").lower(): self.secrets.get(key, "")
            for key in ("DATABASE_NAME", "DATABASE_USER", "DATABASE_PASSWORD", "DATABASE_HOST")
        } | {"port": self.secrets.get("DATABASE_PORT", "")}


class Session:
    """A client (mariadb or psql) kept open through pipes, one query at a time.

    Needed where one connection must hold something while other programs run: a global
    read lock, or a transaction whose snapshot pg_dump shares."""

    def __init__(self, argv: list[str], env: dict[str, str], user: str | None = None) -> None:
        full_env = {**BASE_ENV, **env}
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd="/",
            **as_user(user, full_env),
        )

    def query(self, sql: str) -> list[list[str]]:
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.process.stdin.write(f"{sql.rstrip().rstrip(';')};\nSELECT '{END}';\n")
        self.process.stdin.flush()
        rows: list[list[str]] = []
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if line == END:
                return rows
            rows.append(line.split("\t"))
        self.process.wait()
        raise AgentError(
            "a database query failed", output=tail(self.process.stderr.read()), command=sql[:200]
        )

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def pump(process: subprocess.Popen[bytes], sink: Sink, first: Callable[[], None] | None) -> None:
    """Copy a dump tool's stdout into sink; call `first` once output has begun."""
    assert process.stdout
    while chunk := process.stdout.read(CHUNK):
        if first:
            first()
            first = None
        sink(chunk)
    if first:
        first()


def finish(process: subprocess.Popen[bytes], what: str) -> None:
    assert process.stderr
    error = process.stderr.read().decode(errors="replace")
    if process.wait() != 0:
        raise AgentError(f"{what} failed (exit {process.returncode})", output=tail(error))


def run_reading(
    argv: list[str], path: Path, env: dict[str, str], user: str | None, what: str
) -> None:
    """Run a loader with a file as its stdin."""
    reading(argv, path, user, env, what)


def reading(
    argv: list[str],
    path: Path,
    user: str | None,
    env: dict[str, str] | None = None,
    what: str = "reading the dump",
) -> str:
    """Run argv with a file (opened here, by root) as its stdin; return its stdout."""
    full_env = {**BASE_ENV, **(env or {})}
    with path.open("rb") as stdin:
        result = subprocess.run(
            argv,
            stdin=stdin,
            capture_output=True,
            env=full_env,
            cwd="/",
            check=False,
            **as_user(user, full_env),
        )
    if result.returncode != 0:
        raise AgentError(f"{what} failed", output=tail(result.stderr.decode(errors="replace")))
    return result.stdout.decode()


def in_thread(work: Callable[[], Checksums]) -> Callable[[], Checksums]:
    """Run work beside the dump (the second CPU is otherwise idle); join returns its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # reported by join
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def join() -> Checksums:
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    return join


def check_engine(found: str, wanted: str, backup_id: str) -> None:
    if found != wanted:
        raise AgentError(
            f"backup {backup_id} holds a {found} database; this app uses {wanted}",
            hint="restore it into an app with the same [database] engine, or pick another backup",
            code=ExitCode.CONFIG,
        )

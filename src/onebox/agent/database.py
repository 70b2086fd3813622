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

import json
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .paths import AppPaths
from .protocol import EXIT_CONFIG, AgentError
from .system import BASE_ENV, as_user, run, tail, write_file

Sink = Callable[[bytes], None]
Checksums = dict[str, list[int]]  # table -> [rows, checksum]
CHUNK = 1 << 20
END = "ONEBOX-END"


def engine_for(app: str, config: dict, secrets_: dict[str, str]) -> Engine:
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

    def ensure(self, values: dict[str, str]) -> bool:
        raise NotImplementedError

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

    def shell(self) -> list[str]:
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
        wanted = {
            "DATABASE_URL": url,
            "DATABASE_NAME": name,
            "DATABASE_USER": user,
            "DATABASE_PASSWORD": password,
            "DATABASE_HOST": host,
            "DATABASE_PORT": str(port),
        }
        changed = any(values.get(key) != value for key, value in wanted.items())
        values.update(wanted)
        return changed

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
            **as_user(user, full_env),  # type: ignore[arg-type]
        )

    def query(self, sql: str) -> list[list[str]]:
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.process.stdin.write(f"{sql.rstrip().rstrip(';')};\nSELECT '{END}';\n")
        self.process.stdin.flush()
        rows = []
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
    full_env = {**BASE_ENV, **env}
    with path.open("rb") as stdin:
        result = subprocess.run(
            argv,
            stdin=stdin,
            capture_output=True,
            env=full_env,
            cwd="/",
            check=False,
            **as_user(user, full_env),  # type: ignore[arg-type]
        )
    if result.returncode != 0:
        raise AgentError(f"{what} failed", output=tail(result.stderr.decode(errors="replace")))


def in_thread(work: Callable[[], Checksums]) -> Callable[[], Checksums]:
    """Run work beside the dump (the second CPU is otherwise idle); join returns its result."""
    box: dict[str, object] = {}

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
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    return join


# --------------------------------------------------------------------------- SQLite

SQLITE_SCRIPT = r"""
import hashlib, json, sqlite3, sys
action, path = sys.argv[1], sys.argv[2]

def checksums(db):
    out = {}
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    for name in sorted(names):
        rows, total = 0, 0
        for row in db.execute('SELECT * FROM "%s"' % name.replace('"', '""')):
            rows += 1
            total += int(hashlib.md5(repr(row).encode()).hexdigest()[:15], 16)
        out[name] = [rows, total]
    return out

def check(db):
    problem = db.execute("PRAGMA integrity_check").fetchone()[0]
    if problem != "ok":
        sys.exit("integrity check failed: " + problem)

if action == "dump":  # online backup API: a consistent copy while the app writes
    src = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    dst = sqlite3.connect(sys.argv[3])
    src.backup(dst)
    src.close()
    dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    check(dst)
    print(json.dumps(checksums(dst)))
elif action == "checksums":
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    check(db)
    print(json.dumps(checksums(db)))
elif action == "load":  # the backup API again, into the live file: readers see old or new
    src = sqlite3.connect("file:%s?mode=ro" % sys.argv[3], uri=True)
    check(src)
    dst = sqlite3.connect(path, timeout=30)
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=WAL")
    check(dst)
"""


class SQLite(Engine):
    name = "sqlite"
    dump_file = "db.sqlite3"
    packages = ["sqlite3"]

    @property
    def path(self) -> Path:
        url = self.secrets.get("DATABASE_URL", "")
        if url.startswith("sqlite:///"):
            return Path("/" + url.removeprefix("sqlite:///").lstrip("/"))
        return self.paths.db / "db.sqlite3"

    def ensure(self, values: dict[str, str]) -> bool:
        if values.get("DATABASE_URL") is None:
            values["DATABASE_URL"] = f"sqlite:///{self.paths.db}/db.sqlite3"
            return True
        return False

    def size(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.is_file())

    def _script(self, *args: str, what: str) -> str:
        return run(
            ["/usr/bin/python3", "-c", SQLITE_SCRIPT, *args],
            user=self.app,
            what=what,
            cwd=Path("/"),
        ).stdout

    def dump(self, sink: Sink) -> Checksums:
        if not self.path.is_file():
            raise AgentError(
                f"the database file {self.path} does not exist",
                hint="deploy the app first (its migrations create it)",
            )
        # The copy is made by the app's user (a root-owned -wal/-shm file beside the live
        # database would lock the app out of it), in a folder of the app's.
        staging = self._folder(".onebox-dump")
        try:
            copy = staging / self.dump_file
            sums = json.loads(self._script("dump", str(self.path), str(copy), what="SQLite backup"))
            with copy.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    sink(chunk)
            return sums
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def staging(self) -> Path:
        return self._folder(".onebox-restore")

    def _folder(self, name: str) -> Path:
        folder = self.paths.db / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700, parents=True)
        shutil.chown(folder, self.app, self.app)
        return folder

    def load(self, path: Path, scratch: bool = False) -> None:
        shutil.chown(path, self.app, self.app)
        if scratch:
            self._scratch = path  # a SQLite dump is a database already: checksum it in place
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._script("load", str(self.path), str(path), what="restoring the SQLite database")

    def checksums(self, scratch: bool = False) -> Checksums:
        path = self._scratch if scratch else self.path
        return json.loads(self._script("checksums", str(path), what="reading the SQLite database"))

    def drop_scratch(self) -> None:
        pass

    def shell(self) -> list[str]:
        return ["runuser", "-u", self.app, "--", "sqlite3", str(self.path)]


# --------------------------------------------------------------------------- MariaDB/MySQL

MARIADB_CONFIG = """# Written by onebox: local connections only, full Unicode, strict SQL.
[mysqld]
bind-address = 127.0.0.1
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
sql_mode = STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION
"""
MARIADB_CONFIG_PATH = Path("/etc/mysql/mariadb.conf.d/60-onebox.cnf")


class MariaDB(Engine):
    name = "mysql"
    dump_file = "db.sql"

    @property
    def packages(self) -> list[str]:  # type: ignore[override]
        client = [] if shutil.which("mariadb") or shutil.which("mysql") else ["mariadb-client"]
        if self.external or self.server_installed():
            return client
        return ["mariadb-server", "mariadb-client", "tzdata"]

    @staticmethod
    def server_installed() -> bool:
        return any(shutil.which(name) for name in ("mariadbd", "mysqld"))

    @property
    def client(self) -> str:
        return shutil.which("mariadb") or "mysql"

    @property
    def dump_tool(self) -> str:
        return shutil.which("mariadb-dump") or "mysqldump"

    @property
    def database(self) -> str:
        return self.conn["name"] if self.external else db_name(self.app)

    def scratch_name(self) -> str:
        return f"onebox_verify_{self.database}"[:64]

    def _access(self) -> tuple[list[str], dict[str, str]]:
        """How the agent connects: as root over the socket, or with the app's credentials."""
        if not self.external:
            return ["--protocol=socket", "--user=root"], {}
        conn = self.conn
        args = [f"--host={conn['host']}", f"--user={conn['user']}"]
        if conn["port"]:
            args.append(f"--port={conn['port']}")
        return args, {"MYSQL_PWD": conn["password"]}

    def _client(self, database: str = "") -> tuple[list[str], dict[str, str]]:
        access, env = self._access()
        argv = [self.client, *access, "--batch", "--skip-column-names", "--unbuffered"]
        argv += ["--default-character-set=utf8mb4", *([database] if database else [])]
        return argv, env

    def sql(self, text: str, database: str = "", what: str = "a database query") -> list[list[str]]:
        argv, env = self._client(database)
        result = run(argv, env=env, input=text, check=False, timeout=3600)
        if result.returncode != 0:
            raise AgentError(
                f"{what} failed", output=tail(result.stderr), hint=self._hint(result.stderr)
            )
        return [line.split("\t") for line in result.stdout.splitlines()]

    def _hint(self, error: str) -> str:
        if "Access denied" in error:
            return (
                "the database refused the credentials: check [database] url and run "
                "`onebox env set DATABASE_PASSWORD=...`"
                if self.external
                else "run `onebox setup` again to repair the database user"
            )
        if "Can't connect" in error or "Unknown MySQL server host" in error:
            return (
                "the database server is not reachable: is it running, and is [database] url right?"
                if self.external
                else "MariaDB is not running: `systemctl status mariadb` on the server"
            )
        return ""

    def ensure(self, values: dict[str, str]) -> bool:
        changed = self._connection_values(values, "mysql", 3306)
        self.secrets = values
        if self.external:
            self.sql("SELECT 1", self.database, what="connecting to the external database")
            return changed
        if not MARIADB_CONFIG_PATH.parent.is_dir():  # an existing MySQL: leave its config be
            pass
        elif write_file(MARIADB_CONFIG_PATH, MARIADB_CONFIG):
            run(["systemctl", "restart", "mariadb"], what="restarting MariaDB")
            changed = True
        if run(["systemctl", "is-active", "mariadb"], check=False).stdout.strip() != "active":
            run(["systemctl", "start", "mariadb"], check=False, what="starting MariaDB")
        if not self.sql("SELECT 1 FROM mysql.time_zone_name LIMIT 1", what="reading time zones"):
            zones = run(["mariadb-tzinfo-to-sql", "/usr/share/zoneinfo"], check=False).stdout
            self.sql(zones, "mysql", what="loading time zones")  # for Django's USE_TZ lookups
        name, user, password = self.database, self.database, values["DATABASE_PASSWORD"]
        exists = self.sql(f"SELECT 1 FROM mysql.user WHERE user='{user}' AND host='localhost'")
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS `{name}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
            f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{password}';\n"
            f"ALTER USER '{user}'@'localhost' IDENTIFIED BY '{password}';\n"
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'localhost';",
            what="creating the database and its user",
        )
        return changed or not exists

    def size(self) -> int:
        rows = self.sql(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            f"WHERE table_schema = '{self.database}'"
        )
        return int(rows[0][0])

    def dump(self, sink: Sink) -> Checksums:
        """mariadb-dump --single-transaction, and checksums of the very same snapshot.

        For a moment, a global read lock holds writes while two snapshots open: our own
        (for the checksums) and the dump's. Both then see the same data. The lock is
        released as soon as the dump has produced output, i.e. opened its transaction."""
        access, env = self._access()
        lock = check = None
        if not self.external:  # a managed server grants no RELOAD: its checksums are close
            lock = Session(self._client()[0], env)
            lock.query("SET SESSION lock_wait_timeout = 10; FLUSH TABLES WITH READ LOCK")
        try:
            check = Session(self._client(self.database)[0], env)
            check.query(
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; "
                "START TRANSACTION WITH CONSISTENT SNAPSHOT"
            )
            argv = [self.dump_tool, *access, "--single-transaction", "--quick", "--routines"]
            argv += ["--triggers", "--hex-blob", "--skip-dump-date", "--no-tablespaces"]
            argv += ["--default-character-set=utf8mb4", self.database]
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env={**BASE_ENV, **env},
            )
            session = check
            sums = in_thread(lambda: self._checksums(session, self.database))

            def unlock() -> None:
                if lock:
                    lock.query("UNLOCK TABLES")

            pump(process, sink, unlock)
            finish(process, "mariadb-dump")
            return sums()
        finally:
            for session_ in (lock, check):
                if session_:
                    session_.close()

    def _checksums(self, session: Session, database: str) -> Checksums:
        columns: dict[str, list[str]] = {}
        for table, column in session.query(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            f"WHERE c.table_schema = '{database}' AND t.table_type = 'BASE TABLE' "
            "ORDER BY c.table_name, c.ordinal_position"
        ):
            columns.setdefault(table, []).append(f"`{column}`")
        out: Checksums = {}
        for table, cols in sorted(columns.items()):
            # CRC32 per row, summed: order-free, and a third of MD5's cost on a big table.
            # (Tampering is restic's to catch, with its MACs; this catches lost or changed rows.)
            nulls = ", ".join(f"ISNULL({c})" for c in cols)
            row = f"CONCAT_WS(0x1f, {', '.join(cols)}, CONCAT({nulls}))"
            [[count, total]] = session.query(
                f"SELECT COUNT(*), COALESCE(SUM(CRC32({row})), 0) FROM `{table}`"
            )
            out[table] = [int(count), int(total)]
        return out

    def load(self, path: Path, scratch: bool = False) -> None:
        database = self.scratch_name() if scratch else self.database
        if scratch:
            self.drop_scratch()
            self.sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        else:
            self._drop_tables(database)
        argv, env = self._client(database)
        run_reading(argv, path, env, None, "loading the dump into MariaDB")

    def _drop_tables(self, database: str) -> None:
        tables = self.sql(
            "SELECT table_name, table_type FROM information_schema.tables "
            f"WHERE table_schema = '{database}'"
        )
        if not tables:
            return
        views = [f"`{name}`" for name, kind in tables if kind == "VIEW"]
        bases = [f"`{name}`" for name, kind in tables if kind != "VIEW"]
        statements = ["SET FOREIGN_KEY_CHECKS = 0"]
        if views:
            statements.append(f"DROP VIEW IF EXISTS {', '.join(views)}")
        if bases:
            statements.append(f"DROP TABLE IF EXISTS {', '.join(bases)}")
        self.sql(";\n".join(statements) + ";", database, what="emptying the database")

    def checksums(self, scratch: bool = False) -> Checksums:
        database = self.scratch_name() if scratch else self.database
        session = Session(self._client(database)[0], self._access()[1])
        try:
            return self._checksums(session, database)
        finally:
            session.close()

    def drop_scratch(self) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{self.scratch_name()}`")

    def shell(self) -> list[str]:
        if self.external:  # the password reaches the client through a 0600 options file
            return []
        return [self.client, "--protocol=socket", "--user=root", self.database]


# --------------------------------------------------------------------------- PostgreSQL


class PostgreSQL(Engine):
    name = "postgresql"
    dump_file = "db.pgdump"

    @property
    def packages(self) -> list[str]:  # type: ignore[override]
        return ["postgresql-client"] if self.external else ["postgresql", "postgresql-client"]

    @property
    def database(self) -> str:
        return self.conn["name"] if self.external else db_name(self.app)

    @property
    def role(self) -> str:
        return self.conn["user"] if self.external else db_name(self.app)

    def scratch_name(self) -> str:
        return f"onebox_verify_{self.database}"[:63]

    def _access(self, database: str) -> tuple[list[str], dict[str, str], str | None]:
        """argv tail, environment and OS user for a client: postgres over the socket locally."""
        if not self.external:
            return ["--dbname", database], {}, "postgres"
        conn = self.conn
        args = ["--host", conn["host"], "--username", conn["user"], "--dbname", database]
        if conn["port"]:
            args += ["--port", conn["port"]]
        return args, {"PGPASSWORD": conn["password"], "PGCONNECT_TIMEOUT": "10"}, None

    def _psql(self, database: str) -> tuple[list[str], dict[str, str], str | None]:
        args, env, user = self._access(database)
        argv = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", *args]
        return argv, env, user

    def sql(self, text: str, database: str = "", what: str = "a database query") -> list[list[str]]:
        default = self.database if self.external else "postgres"
        argv, env, user = self._psql(database or default)
        result = run(argv, env=env, user=user, input=text, check=False, cwd=Path("/"), timeout=3600)
        if result.returncode != 0:
            raise AgentError(
                f"{what} failed", output=tail(result.stderr), hint=self._hint(result.stderr)
            )
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def _hint(self, error: str) -> str:
        if "password authentication failed" in error:
            return (
                "the database refused the credentials: check [database] url and run "
                "`onebox env set DATABASE_PASSWORD=...`"
            )
        if "could not connect" in error or "Connection refused" in error or "timeout" in error:
            return (
                "the database server is not reachable: is it running, and is [database] url right?"
                if self.external
                else "PostgreSQL is not running: `systemctl status postgresql` on the server"
            )
        return ""

    def ensure(self, values: dict[str, str]) -> bool:
        changed = self._connection_values(values, "postgresql", 5432)
        self.secrets = values
        if self.external:
            self.sql("SELECT 1", self.database, what="connecting to the external database")
            return changed
        run(["systemctl", "start", "postgresql"], check=False)
        role, password = self.role, values["DATABASE_PASSWORD"]
        exists = self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")
        verb = "ALTER" if exists else "CREATE"
        self.sql(f"{verb} ROLE \"{role}\" LOGIN PASSWORD '{password}'", what="creating the role")
        if not self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"):
            self.sql(
                f'CREATE DATABASE "{self.database}" OWNER "{role}" '
                "ENCODING 'UTF8' TEMPLATE template0",
                what="creating the database",
            )
            changed = True
        return changed or not exists

    def size(self) -> int:
        return int(self.sql(f"SELECT pg_database_size('{self.database}')")[0][0])

    def dump(self, sink: Sink) -> Checksums:
        """pg_dump in custom format, sharing the snapshot of our own transaction, in which
        the checksums are read: both see exactly the same data, with no lock at all."""
        argv, env, user = self._psql(self.database)
        session = Session(argv, env, user)
        try:
            session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            [[snapshot]] = session.query("SELECT pg_export_snapshot()")
            args, env, user = self._access(self.database)
            full_env = {**BASE_ENV, **env}
            process = subprocess.Popen(
                ["pg_dump", "--format=custom", "--compress=0", f"--snapshot={snapshot}", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd="/",
                **as_user(user, full_env),  # type: ignore[arg-type]
            )
            sums = in_thread(lambda: self._checksums(session))
            pump(process, sink, None)
            finish(process, "pg_dump")
            return sums()
        finally:
            session.close()

    def _checksums(self, session: Session) -> Checksums:
        out: Checksums = {}
        tables = session.query(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
        for schema, table in tables:
            name = table if schema == "public" else f"{schema}.{table}"
            # hashtext (PostgreSQL's own hash of the row's text) per row, summed: order-free
            # and half md5's cost; compared only ever on the same server.
            [[count, total]] = session.query(
                "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) "
                f'FROM "{schema}"."{table}" t'
            )
            out[name] = [int(count), int(total)]
        return out

    def load(self, path: Path, scratch: bool = False) -> None:
        database = self.scratch_name() if scratch else self.database
        if scratch:
            self.drop_scratch()
            self.sql(f'CREATE DATABASE "{database}" OWNER "{self.role}" TEMPLATE template0')
        self.sql(
            "DROP SCHEMA IF EXISTS public CASCADE; "
            f'CREATE SCHEMA public AUTHORIZATION "{self.role}"',
            database,
            what="emptying the database",
        )
        args, env, user = self._access(database)
        argv = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error"]
        argv += ["--single-transaction", *args]
        if not self.external:
            argv.append(f"--role={self.role}")  # objects belong to the app, not to postgres
        # Through stdin: the dump stays in root's folder, unreadable to the postgres user.
        run_reading(argv, path, env, user, "pg_restore")

    def checksums(self, scratch: bool = False) -> Checksums:
        database = self.scratch_name() if scratch else self.database
        session = Session(*self._psql(database))
        try:
            return self._checksums(session)
        finally:
            session.close()

    def drop_scratch(self) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{self.scratch_name()}"')

    def shell(self) -> list[str]:
        if self.external:
            return []
        return ["runuser", "-u", "postgres", "--", "psql", "--dbname", self.database]


def check_engine(found: str, wanted: str, backup_id: str) -> None:
    if found != wanted:
        raise AgentError(
            f"backup {backup_id} holds a {found} database; this app uses {wanted}",
            hint="restore it into an app with the same [database] engine, or pick another backup",
            code=EXIT_CONFIG,
        )

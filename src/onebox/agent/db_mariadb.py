"""MariaDB (or an existing MySQL): provisioning, mariadb-dump, loading, checksums."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from .database import (
    Checksums,
    Engine,
    Session,
    Sink,
    finish,
    first_line,
    in_thread,
    my_ident,
    my_literal,
    pump,
    redact,
    run_reading,
)
from .protocol import AgentError
from .system import BASE_ENV, run, tail, write_file

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
    scheme, default_port, service, label = "mysql", 3306, "mariadb", "MariaDB"

    @property
    def packages(self) -> list[str]:  # type: ignore[override]  # (a class list on Engine)
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

    def scratch_name(self) -> str:
        return f"onebox_verify_{self.database}"[:64]

    @property
    def on_this_server(self) -> bool:
        """An existing database of this server's own MariaDB, named by [database] url (an
        adopted site's): root reaches it over the socket, as one onebox made, so that
        dumps are consistent and verification has its scratch database."""
        # "localhost" is the MySQL client's word for this server's socket; an address
        # (127.0.0.1) may be a tunnel or a cloud proxy to another server: external.
        local = urlsplit(self.url).hostname == "localhost"
        return self.external and local and self.server_installed()

    @property
    def as_root(self) -> bool:
        return not self.external or self.on_this_server

    def ensure(self, values: dict[str, str]) -> bool:
        if not self.on_this_server:
            return super().ensure(values)
        changed = self._connection_values(values, self.scheme, self.default_port)
        self.secrets = values
        argv, env = self._client(self.database, as_app=True)
        check = run(argv, env=env, input="SELECT 1", check=False, timeout=60)
        if check.returncode != 0:
            error = redact(check.stderr, self.conn["password"])
            raise AgentError(
                f"connecting to {self.database} as {self.conn['user']} failed: {first_line(error)}",
                hint=self._hint(error),
            )
        return changed

    def _access(self, as_app: bool = False) -> tuple[list[str], dict[str, str]]:
        """How the agent connects: as root over the socket, or with the app's credentials."""
        if self.as_root and not as_app:
            return ["--protocol=socket", "--user=root"], {}
        conn = self.conn
        args = [f"--host={conn['host']}", f"--user={conn['user']}"]
        if conn["port"]:
            args.append(f"--port={conn['port']}")
        return args, {"MYSQL_PWD": conn["password"]}

    def _client(self, database: str = "", as_app: bool = False) -> tuple[list[str], dict[str, str]]:
        access, env = self._access(as_app)
        argv = [self.client, *access, "--batch", "--skip-column-names", "--unbuffered"]
        argv += ["--default-character-set=utf8mb4", *([database] if database else [])]
        return argv, env

    def sql(
        self, text: str, database: str = "", what: str = "a database query", secret: str = ""
    ) -> list[list[str]]:
        argv, env = self._client(database)
        result = run(argv, env=env, input=text, check=False, timeout=3600)
        if result.returncode != 0:
            error = redact(result.stderr, secret, self.conn["password"])
            raise AgentError(
                f"{what} failed: {first_line(error)}",
                output=tail(error),
                hint=self._hint(error),
            )
        return [line.split("\t") for line in result.stdout.splitlines()]

    def _hint(self, error: str) -> str:
        unreachable = "Can't connect" in error or "Unknown MySQL server host" in error
        return self.connection_hint("Access denied" in error, unreachable)

    def _provision(self, values: dict[str, str]) -> bool:
        changed = False
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
        account = f"{my_literal(user)}@'localhost'"
        exists = self.sql(
            f"SELECT 1 FROM mysql.user WHERE user={my_literal(user)} AND host='localhost'"
        )
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS {my_ident(name)} "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
            f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {my_literal(password)};\n"
            f"ALTER USER {account} IDENTIFIED BY {my_literal(password)};\n"
            f"GRANT ALL PRIVILEGES ON {my_ident(name)}.* TO {account};",
            what="creating the database and its user",
            secret=password,
        )
        return changed or not exists

    def size(self) -> int:
        rows = self.sql(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            f"WHERE table_schema = {my_literal(self.database)}",
            what="reading the database's size",
        )
        return int(rows[0][0])

    def dump(self, sink: Sink) -> Checksums:
        """mariadb-dump --single-transaction, and checksums of the very same snapshot.

        For a moment, a global read lock holds writes while two snapshots open: our own
        (for the checksums) and the dump's. Both then see the same data. The lock is
        released as soon as the dump has produced output, i.e. opened its transaction."""
        access, env = self._access()
        lock = check = None
        if self.as_root:  # a managed server grants no RELOAD: its checksums are close
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
            f"WHERE c.table_schema = {my_literal(database)} AND t.table_type = 'BASE TABLE' "
            "ORDER BY c.table_name, c.ordinal_position"
        ):
            columns.setdefault(table, []).append(my_ident(column))
        out: Checksums = {}
        for table, cols in sorted(columns.items()):
            # CRC32 per row, summed: order-free, and a third of MD5's cost on a big table.
            # (Tampering is restic's to catch, with its MACs; this catches lost or changed rows.)
            nulls = ", ".join(f"ISNULL({c})" for c in cols)
            row = f"CONCAT_WS(0x1f, {', '.join(cols)}, CONCAT({nulls}))"
            [[count, total]] = session.query(
                f"SELECT COUNT(*), COALESCE(SUM(CRC32({row})), 0) FROM {my_ident(table)}"
            )
            out[table] = [int(count), int(total)]
        return out

    def load(self, path: Path, scratch: bool = False) -> None:
        database = self.scratch_name() if scratch else self.database
        if scratch:
            self.drop_scratch()
            self.sql(f"CREATE DATABASE {my_ident(database)} CHARACTER SET utf8mb4")
        else:
            self._drop_tables(database)
        argv, env = self._client(database)
        run_reading(argv, path, env, None, "loading the dump into MariaDB")

    def _drop_tables(self, database: str) -> None:
        tables = self.sql(
            "SELECT table_name, table_type FROM information_schema.tables "
            f"WHERE table_schema = {my_literal(database)}"
        )
        if not tables:
            return
        views = [my_ident(name) for name, kind in tables if kind == "VIEW"]
        bases = [my_ident(name) for name, kind in tables if kind != "VIEW"]
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
        self.sql(f"DROP DATABASE IF EXISTS {my_ident(self.scratch_name())}")

"""PostgreSQL: provisioning, pg_dump sharing onebox's snapshot, pg_restore, checksums."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .database import (
    Checksums,
    Engine,
    Session,
    Sink,
    db_name,
    finish,
    first_line,
    in_thread,
    pg_ident,
    pg_literal,
    pump,
    redact,
    run_reading,
)
from .protocol import AgentError
from .system import BASE_ENV, as_user, run, tail


class PostgreSQL(Engine):
    name = "postgresql"
    dump_file = "db.pgdump"
    # "postgres://": the spelling dj-database-url and django-environ both accept, and the
    # one projects test DATABASE_URL for
    scheme, default_port, service, label = "postgres", 5432, "postgresql", "PostgreSQL"

    @property
    def packages(self) -> list[str]:  # type: ignore[override]  # (a class list on Engine)
        return ["postgresql-client"] if self.external else ["postgresql", "postgresql-client"]

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
        env = {"PGPASSWORD": conn["password"], "PGCONNECT_TIMEOUT": "10", **self.tls_values()}
        return args, env, None

    def _psql(self, database: str) -> tuple[list[str], dict[str, str], str | None]:
        args, env, user = self._access(database)
        argv = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", *args]
        return argv, env, user

    def sql(
        self, text: str, database: str = "", what: str = "a database query", secret: str = ""
    ) -> list[list[str]]:
        default = self.database if self.external else "postgres"
        argv, env, user = self._psql(database or default)
        result = run(argv, env=env, user=user, input=text, check=False, cwd=Path("/"), timeout=3600)
        if result.returncode != 0:
            error = redact(result.stderr, secret, self.conn["password"])
            raise AgentError(
                f"{what} failed: {first_line(error)}",
                output=tail(error),
                hint=self._hint(error),
            )
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def _hint(self, error: str) -> str:
        unreachable = any(
            text in error for text in ("could not connect", "Connection refused", "timeout")
        )
        return self.connection_hint("password authentication failed" in error, unreachable)

    def _provision(self, values: dict[str, str]) -> bool:
        changed = False
        run(["systemctl", "start", "postgresql"], check=False)
        role, password = self.role, values["DATABASE_PASSWORD"]
        exists = self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = {pg_literal(role)}")
        verb = "ALTER" if exists else "CREATE"
        self.sql(
            f"{verb} ROLE {pg_ident(role)} NOSUPERUSER NOCREATEDB NOCREATEROLE LOGIN "
            f"PASSWORD {pg_literal(password)}",
            what="creating the role",
            secret=password,
        )
        if not self.sql(f"SELECT 1 FROM pg_database WHERE datname = {pg_literal(self.database)}"):
            self.sql(
                f"CREATE DATABASE {pg_ident(self.database)} OWNER {pg_ident(role)} "
                "ENCODING 'UTF8' TEMPLATE template0",
                what="creating the database",
            )
            changed = True
        return changed or not exists

    def size(self) -> int:
        query = f"SELECT pg_database_size({pg_literal(self.database)})"
        return int(self.sql(query, what="reading the database's size")[0][0])

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
                **as_user(user, full_env),
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
                f"FROM {pg_ident(schema)}.{pg_ident(table)} t"
            )
            out[name] = [int(count), int(total)]
        return out

    def load(self, path: Path, scratch: bool = False) -> None:
        database = self.scratch_name() if scratch else self.database
        if scratch and not self.scratch_kept():
            self.drop_scratch()
            self.create_scratch()
        self.sql(
            "DROP SCHEMA IF EXISTS public CASCADE; "
            f"CREATE SCHEMA public AUTHORIZATION {pg_ident(self.role)}",
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

    def create_scratch(self) -> None:
        self.sql(
            f"CREATE DATABASE {pg_ident(self.scratch_name())} OWNER {pg_ident(self.role)} "
            "TEMPLATE template0",
            what="creating the verification's scratch database",
        )

    def scratch_kept(self) -> bool:
        """An external server's scratch database made for the app (a database host makes
        it: the app's role may not create databases there), emptied, never dropped."""
        if not self.external:
            return False
        found = f"SELECT 1 FROM pg_database WHERE datname = {pg_literal(self.scratch_name())}"
        return bool(self.sql(found))

    def drop_scratch(self) -> None:
        if self.scratch_kept():
            self.sql(
                "DROP SCHEMA IF EXISTS public CASCADE; "
                f"CREATE SCHEMA public AUTHORIZATION {pg_ident(self.role)}",
                self.scratch_name(),
                what="emptying the scratch database",
            )
            return
        self.sql(f"DROP DATABASE IF EXISTS {pg_ident(self.scratch_name())}")

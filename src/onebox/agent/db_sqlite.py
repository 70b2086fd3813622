"""SQLite: the online backup API for dumps and loads, run as the app's user."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .database import Checksums, Engine, Sink, finish, pump, reading, run_reading
from .protocol import AgentError
from .system import BASE_ENV, as_user, run

# Runs as the app's user. Root never opens a path in the app's folders (the app could
# swap any of them for a symlink to root's secrets): the data crosses in pipes only, and
# the scratch copies this script makes are the app's own, in the database's folder.
SQLITE_SCRIPT = r"""
import hashlib, json, os, shutil, sqlite3, sys, tempfile
action, path, workspace = sys.argv[1], sys.argv[2], sys.argv[3]

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

def scratch():
    folder = tempfile.mkdtemp(prefix=".onebox-", dir=workspace)
    return folder, os.path.join(folder, "db.sqlite3")

def from_stdin(target):
    with open(target, "wb") as handle:
        shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)

folder, copy = scratch()
try:
    if action == "dump":  # online backup API: a consistent copy while the app writes
        src = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        dst = sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        check(dst)
        sums = checksums(dst)
        dst.close()
        out = sys.stdout.buffer
        out.write(json.dumps(sums).encode() + b"\n")  # the checksums first, then the file
        with open(copy, "rb") as handle:
            shutil.copyfileobj(handle, out, 1 << 20)
        out.flush()
    elif action == "checksums":  # of the live database
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        check(db)
        print(json.dumps(checksums(db)))
    elif action == "checksums-of-stdin":  # of a dump (a backup being verified)
        from_stdin(copy)
        db = sqlite3.connect("file:%s?mode=ro" % copy, uri=True)
        check(db)
        print(json.dumps(checksums(db)))
        db.close()
    elif action == "load":  # the backup API again, into the live file: readers see old or new
        from_stdin(copy)
        src = sqlite3.connect("file:%s?mode=ro" % copy, uri=True)
        check(src)
        dst = sqlite3.connect(path, timeout=30)
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")
        check(dst)
finally:
    shutil.rmtree(folder, ignore_errors=True)
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

    def _argv(self, action: str) -> list[str]:
        # its scratch copies go in shared/db (the app's, and writable in the backup
        # timers' sandbox), wherever DATABASE_URL puts the database itself
        return ["/usr/bin/python3", "-c", SQLITE_SCRIPT, action, str(self.path), str(self.paths.db)]

    def _script(self, action: str, what: str) -> str:
        return run(self._argv(action), user=self.app, what=what, cwd=Path("/")).stdout

    def dump(self, sink: Sink) -> Checksums:
        if not self.path.is_file():
            raise AgentError(
                f"the database file {self.path} does not exist",
                hint="deploy the app first (its migrations create it)",
            )
        # The copy is made by the app's user (a root-owned -wal/-shm file beside the live
        # database would lock the app out of it) and reaches root through a pipe.
        full_env = dict(BASE_ENV)
        process = subprocess.Popen(
            self._argv("dump"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd="/",
            **as_user(self.app, full_env),
        )
        assert process.stdout
        header = process.stdout.readline(1 << 24)
        try:
            sums = json.loads(header)
        except ValueError:
            sums = None
        if sums is not None:
            pump(process, sink, None)
        else:
            process.kill()
        finish(process, "the SQLite backup")
        if not isinstance(sums, dict):
            raise AgentError("the SQLite backup gave no checksums", output=header[:200].decode())
        return sums

    def load(self, path: Path, scratch: bool = False) -> None:
        """`path` is in root's own folder: its content goes to the app's user on stdin."""
        if scratch:
            self._scratch = path  # a SQLite dump is a database already: checksum that
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        run_reading(self._argv("load"), path, {}, self.app, "restoring the SQLite database")

    def checksums(self, scratch: bool = False) -> Checksums:
        if not scratch:
            return json.loads(self._script("checksums", what="reading the SQLite database"))
        out = reading(self._argv("checksums-of-stdin"), self._scratch, self.app)
        return json.loads(out)

    def drop_scratch(self) -> None:
        pass

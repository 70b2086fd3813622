"""SQLite: the online backup API for dumps and loads, run as the app's user."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .database import CHUNK, Checksums, Engine, Sink
from .protocol import AgentError
from .system import run

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

#!/usr/bin/env python3
"""Backup and restore of a 1M-row database: onebox beside the engine's own tools.

For each engine (MariaDB, PostgreSQL) a fresh Debian 12 practice server runs examples/mvp
with a guestbook table of --rows rows (about 200 MB). In the same run it times, in an
order that rotates from run to run:
  backup:  the raw dump tool into a file (`mariadb-dump --single-transaction --quick`,
           `pg_dump -Fc --compress=0`: uncompressed, as onebox dumps), the same dump piped
           into `restic backup --stdin` by hand (an encrypted backup made the manual way:
           the like-for-like row onebox's ratio is taken against), and `onebox backup`;
  restore: the raw loader (`mariadb DB < dump`, `pg_restore -d DB`) into an empty database,
           `restic dump | loader` by hand (like for like), and `onebox restore` (which
           also takes a safety backup and compares checksums).
Each raw command pays a new SSH connection, as each onebox command does.
While `onebox backup` runs, a bounded probe sends HTTPS requests to the site (keep-alive,
at most 100 req/s and 120 s) and counts answers and failures. Prints medians and ratios.
Needs root (practice servers).

    uv run python bench/backup_restore.py --runs 3
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PracticeServer, example_project, onebox  # noqa: E402

FILL = {
    "mysql": (
        'mariadb {db} -e "INSERT INTO guestbook_entry (name, message, attachment, created) '
        "SELECT CONCAT('user', seq), REPEAT(MD5(seq), 5), '', NOW() - INTERVAL seq SECOND "
        'FROM seq_1_to_{rows}"'
    ),
    "postgresql": (
        'cd / && runuser -u postgres -- psql -q -d {db} -c "INSERT INTO guestbook_entry '
        "(name, message, attachment, created) SELECT 'user' || g, REPEAT(MD5(g::text), 5), '', "
        "NOW() - g * INTERVAL '1 second' FROM generate_series(1, {rows}) g\""
    ),
}
RAW_DUMP = {
    "mysql": "mariadb-dump --single-transaction --quick {db} > /var/tmp/raw.dump",
    "postgresql": (
        "cd / && runuser -u postgres -- pg_dump -Fc --compress=0 {db} > /var/tmp/raw.dump"
    ),
}
HAND_RESTIC = {
    "mysql": "mariadb-dump --single-transaction --quick {db}",
    "postgresql": "cd / && runuser -u postgres -- pg_dump -Fc --compress=0 {db}",
}
RAW_LOAD = {
    "mysql": (
        "mariadb -e 'DROP DATABASE IF EXISTS rawload; CREATE DATABASE rawload' && "
        "mariadb rawload < /var/tmp/raw.dump"
    ),
    "postgresql": (
        "cd / && runuser -u postgres -- dropdb --if-exists rawload && "
        "runuser -u postgres -- createdb rawload && "
        "runuser -u postgres -- pg_restore -d rawload < /var/tmp/raw.dump"
    ),
}
HAND_LOAD = {
    "mysql": (
        "mariadb -e 'DROP DATABASE IF EXISTS handload; CREATE DATABASE handload' && "
        "{repo} restic dump -q latest dump | mariadb handload"
    ),
    "postgresql": (
        "cd / && runuser -u postgres -- dropdb --if-exists handload && "
        "runuser -u postgres -- createdb handload && "
        "{repo} restic dump -q latest dump | runuser -u postgres -- pg_restore -d handload"
    ),
}
HAND_REPO = (
    "RESTIC_REPOSITORY=/var/tmp/hand-repo RESTIC_PASSWORD_FILE=/var/tmp/hand-key "
    "RESTIC_CACHE_DIR=/var/tmp/hand-cache"
)


class Probe:
    """Keep-alive HTTPS GETs of /health/ while something runs: bounded in count and time."""

    def __init__(self, address: str, ca: Path, rate: float = 100, limit: float = 120) -> None:
        self.address, self.rate, self.limit = address, rate, limit
        self.context = ssl.create_default_context(cafile=str(ca))
        self.ok = self.failed = 0
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        conn = None
        sent = 0
        while not self._stop.is_set() and time.monotonic() < deadline and sent < 20000:
            sent += 1
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(
                        self.address, context=self.context, timeout=10
                    )
                conn.request("GET", "/health/")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.ok += 1
                    self.latencies.append(time.monotonic() - started)
                else:
                    self.failed += 1
            except (OSError, http.client.HTTPException):
                self.failed += 1
                conn = None
            time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))


def prepare(engine: str, rows: int, tmp: Path) -> tuple[PracticeServer, Path, Path]:
    server = PracticeServer(f"bdata-{engine[:5]}-{os.getpid()}")
    project = example_project(tmp / engine, server, engine=engine)
    onebox("setup", cwd=project)
    onebox("deploy", cwd=project)
    ca = tmp / f"{engine}-ca.pem"
    ca.write_text(onebox("ca", cwd=project)[1])
    server.ssh(FILL[engine].format(db="mvp", rows=rows))
    server.ssh(
        f"head -c 32 /dev/urandom | base64 > /var/tmp/hand-key && {HAND_REPO} restic init -q"
    )
    return server, project, ca


def fresh(server: PracticeServer, command: str) -> float:
    """A raw command over a new SSH connection (no master), as onebox's commands pay one."""
    base, args = [], iter(server.base)
    for arg in args:
        if arg == "-o":
            option = next(args)
            if not option.startswith("Control"):
                base += ["-o", option]
        else:
            base.append(arg)
    base[-1:-1] = ["-o", "ControlPath=none"]  # (before the target, the last argument)
    started = time.monotonic()
    result = subprocess.run([*base, command], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        sys.exit(f"ssh {command!r} failed:\n{result.stderr}")
    return time.monotonic() - started


def bench(engine: str, rows: int, runs: int, tmp: Path) -> dict[str, list[float]]:
    server, project, ca = prepare(engine, rows, tmp)
    times: dict[str, list[float]] = {}
    probes: list[Probe] = []
    try:
        steps = {
            "backup: raw dump to a file": lambda: fresh(server, RAW_DUMP[engine].format(db="mvp")),
            "backup: dump | restic by hand": lambda: fresh(
                server,
                f"{HAND_RESTIC[engine].format(db='mvp')} | {HAND_REPO} restic backup -q "
                "--stdin --stdin-filename dump",
            ),
            "backup: onebox backup": lambda: onebox("backup", cwd=project)[0],
            "restore: raw loader": lambda: fresh(server, RAW_LOAD[engine]),
            "restore: restic dump | loader by hand": lambda: fresh(
                server, HAND_LOAD[engine].format(repo=HAND_REPO)
            ),
            "restore: onebox restore": lambda: onebox("restore", cwd=project)[0],
        }

        for run in range(runs):
            names = list(steps)
            # the backups before the restores (each restore reads one); their order turns
            backups = [n for n in names if n.startswith("backup")]
            restores = [n for n in names if n.startswith("restore")]
            turn = run % len(backups)
            for name in backups[turn:] + backups[:turn] + restores[turn:] + restores[:turn]:
                if name == "backup: onebox backup":
                    with Probe(server.address, ca) as probe:
                        seconds = steps[name]()
                    probes.append(probe)
                else:
                    seconds = steps[name]()
                times.setdefault(name, []).append(seconds)
    finally:
        server.destroy()
    ok = sum(p.ok for p in probes)
    failed = sum(p.failed for p in probes)
    latencies = sorted(latency for p in probes for latency in p.latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    print(
        f"{engine}: requests during onebox backup: {ok} answered, {failed} failed; "
        f"latency p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["mysql", "postgresql"], action="append")
    args = parser.parse_args()
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engine or ["mysql", "postgresql"]:
            results[engine] = bench(engine, args.rows, args.runs, Path(tmp))
    for engine, times in results.items():
        print(f"\n{engine}, {args.rows:,} rows, {args.runs} runs (median seconds)")
        print(f"| {'step':<38} | median | min | max | ratio to by hand |")
        print(f"|{'-' * 40}|--------|-----|-----|------------------|")
        for key, values in times.items():
            # against the like-for-like row: the same dump through restic, made by hand
            like = "backup: dump | restic by hand" if "backup" in key else (
                "restore: restic dump | loader by hand")  # fmt: skip
            ratio = statistics.median(values) / statistics.median(times[like])
            print(
                f"| {key:<38} | {statistics.median(values):6.2f} | {min(values):.2f} | "
                f"{max(values):.2f} | {ratio:.2f}x |"
            )
    print(f"\nload average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

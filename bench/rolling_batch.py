#!/usr/bin/env python3
"""A code-only rolling deploy to two web hosts, one at a time against both at once.

Four Debian 12 practice servers (a load balancer, two web hosts, the database host), set
up and deployed once; then rolling re-deploys of a one-line change, alternating
`[deploy] batch = 1` (A) and `batch = 2` (B), A B A B..., each under the same steady
load through the balancer (tests/e2e/load.py: GET and POST, kept-alive and new
connections). Prints the medians, the ratio B/A, the requests answered and failed, and
the host's load average before and after (these machines are shared). Needs root.

    uv run python bench/rolling_batch.py --pairs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PracticeServer, onebox  # noqa: E402
from tests.e2e.load import Load  # noqa: E402


def project_for(target: Path, db: str, web: list[str], lb: str) -> Path:
    """examples/mvp on PostgreSQL on the database host, behind the balancer."""
    shutil.copytree(
        ROOT / "examples" / "mvp",
        target,
        ignore=shutil.ignore_patterns("db.sqlite3", "media", "staticfiles", "__pycache__"),
    )
    config = target / "onebox.toml"
    text = config.read_text().replace('host = "sandbox:demo"\n', "")
    text = text.replace('user = "onebox"\n', "")  # (fresh servers: root first, as a user's)
    text = text.replace('engine = "sqlite"', 'engine = "postgresql"')
    text = text.replace("[deploy]\n", "[deploy]\nbatch = 1\n")
    hosts = ", ".join(f'"sandbox:{w}"' for w in web)
    text += f'\n[servers]\nweb = [{hosts}]\nlb = "sandbox:{lb}"\ndb = "sandbox:{db}"\n'
    config.write_text(text)
    return target


def rolling_deploy(project: Path, batch: int, n: int, lb: PracticeServer, ca: Path) -> dict:
    config = project / "onebox.toml"
    text = config.read_text()
    config.write_text(text.replace("batch = 1\n", f"batch = {batch}\n").replace(
        "batch = 2\n", f"batch = {batch}\n"))  # fmt: skip
    views = project / "guestbook" / "views.py"
    views.write_text(views.read_text() + f"\n# change {n}\n")
    with Load(lb.address, lb.address, ca, rate=15, limit=400) as load:
        started = time.monotonic()
        seconds = onebox("deploy", cwd=project)[0]
        wall = time.monotonic() - started
    return {"seconds": seconds, "wall": wall, "answered": load.total, "failed": len(load.failures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    pid = os.getpid()
    names = {role: f"roll{role}-{pid}" for role in ("db", "web1", "web2", "lb")}
    servers: dict[str, PracticeServer] = {}
    try:
        for role, name in names.items():
            servers[role] = PracticeServer(name)
        with tempfile.TemporaryDirectory() as tmp:
            project = project_for(
                Path(tmp) / "mvp", names["db"], [names["web1"], names["web2"]], names["lb"]
            )
            onebox("setup", cwd=project)
            onebox("deploy", cwd=project)
            ca = Path(tmp) / "lb-ca.pem"
            ca.write_text(onebox("ca", "--host", f"sandbox:{names['lb']}", cwd=project)[1])
            runs: dict[int, list[dict]] = {1: [], 2: []}
            for n in range(args.pairs):
                for batch in (1, 2):  # A B A B...
                    change = 2 * n + batch
                    last = rolling_deploy(project, batch, change, servers["lb"], ca)
                    runs[batch].append(last)
                    print(f"batch {batch}: {last['seconds']:.1f} s, {last['answered']} answered, "
                          f"{last['failed']} failed", flush=True)  # fmt: skip
    finally:
        for server in servers.values():
            server.destroy()
    print(f"\n{args.pairs} pairs, code-only rolling deploy to 2 web hosts (probation 3 s)")
    print("| batch | median s | answered (sum) | failed (sum) |")
    print("|---|---|---|---|")
    medians = {}
    for batch, found in runs.items():
        medians[batch] = statistics.median(r["seconds"] for r in found)
        answered = sum(r["answered"] for r in found)
        failed = sum(r["failed"] for r in found)
        print(f"| {batch} | {medians[batch]:.1f} | {answered} | {failed} |")
    print(f"ratio batch 2 / batch 1: {medians[2] / medians[1]:.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

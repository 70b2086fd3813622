#!/usr/bin/env python3
"""Updating a live site under load: onebox deploy and rollback beside the naive ways.

One Debian 12 practice server runs examples/mvp twice, behind the same Caddy: as onebox
deploys it (rel.test, blue/green slots), and as a plain gunicorn systemd service on the
same release (naive.test). Under the same steady load (tests/e2e/load.py: GETs and POSTs,
kept-alive and new connections, 4 clients at 25 req/s each, bounded), it times, in turns:
steady state (nothing happens), `onebox deploy` of a one-line change, `onebox rollback`
to the standby it left, a deploy with `[deploy] standby = false` and the rollback after
it (which starts the release again), `systemctl restart` of the plain gunicorn, and
`kill -HUP` of its master. The plain gunicorn has onebox's workers (2 x 4 threads,
gthread) and its Caddy site onebox's retry and upstream keep-alive, so that the naive
rows measure the method, not a missing retry. Prints, per
method, the wall time, requests answered, failures and latency (p50/p99/max).
Needs root (practice servers).

    uv run python bench/releases.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    PracticeServer,
    example_project,
    measure,
    onebox,
    print_load_average,
    print_load_table,
)
from tests.e2e.load import Load  # noqa: E402  (the e2e tests' load generator)

NAIVE_UNIT = """[Unit]
Description=the example app, run the plain way
[Service]
User=rel
Group=rel
WorkingDirectory=/srv/rel/current
EnvironmentFile=/srv/rel/current/.onebox/release.env
EnvironmentFile=/etc/onebox/rel.env
RuntimeDirectory=naive
RuntimeDirectoryMode=0755
UMask=0000
ExecStart=/srv/rel/current/.venv/bin/gunicorn mvp.wsgi:application \\
    --bind unix:/run/naive/naive.sock --workers 2 --threads 4 --worker-class gthread \\
    --keep-alive 10 --forwarded-allow-ips=*
ExecReload=/bin/kill -HUP $MAINPID
[Install]
WantedBy=multi-user.target
"""
NAIVE_SITE = """naive.test {
\ttls internal
\treverse_proxy unix//run/naive/naive.sock {
\t\theader_up Host rel.test
\t\theader_up Origin https://rel.test
\t\theader_up Referer https://rel.test/
\t}
}
"""


def prepare(tmp: Path) -> tuple[PracticeServer, Path, Path]:
    server = PracticeServer(f"brel-{os.getpid()}")
    try:
        project = example_project(tmp / "rel", server, name="rel", domain="rel.test")
        onebox("setup", cwd=project)
        onebox("deploy", cwd=project)
        ca = tmp / "ca.pem"
        ca.write_text(onebox("ca", cwd=project)[1])
        server.ssh("cat > /etc/systemd/system/naive.service", input=NAIVE_UNIT)
        server.ssh("cat > /etc/caddy/sites/naive.caddy", input=NAIVE_SITE)
        server.ssh("systemctl daemon-reload && systemctl start naive && systemctl reload caddy")
    except BaseException:
        server.destroy()  # a failed preparation leaves no practice server behind
        raise
    time.sleep(2)
    return server, project, ca


def under_load(server: PracticeServer, domain: str, ca: Path, action) -> dict[str, float]:
    return measure(Load(server.address, domain, ca), action)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        server, project, ca = prepare(Path(tmp))
        views = project / "guestbook" / "views.py"
        config = project / "onebox.toml"
        original = config.read_text()
        no_standby = original.replace("[deploy]\n", "[deploy]\nstandby = false\n", 1)
        server_seconds: list[float] = []  # what the rollback itself reports
        try:
            for run in range(args.runs):

                def deploy(run: int = run, standby: bool = True) -> None:
                    views.write_text(views.read_text() + f"\n# change {run}\n")
                    text = original if standby else no_standby
                    config.write_text(text)
                    onebox("deploy", cwd=project)

                def rollback() -> None:
                    result = json.loads(onebox("--json", "rollback", cwd=project)[1])["result"]
                    server_seconds.append(result["seconds"])

                methods = {
                    "steady state (5 s, nothing changes)": ("rel.test", lambda: time.sleep(5)),
                    "onebox deploy (code change)": ("rel.test", deploy),
                    "onebox rollback to the standby": ("rel.test", rollback),
                    "onebox deploy ([deploy] standby = false)": (
                        "rel.test",
                        lambda run=run: deploy(run + 1000, standby=False),
                    ),
                    "onebox rollback without a standby": ("rel.test", rollback),
                    "naive: systemctl restart gunicorn": (
                        "naive.test",
                        lambda: server.ssh("systemctl restart naive"),
                    ),
                    "naive: kill -HUP gunicorn": (
                        "naive.test",
                        lambda: server.ssh("systemctl kill -s HUP --kill-who=main naive"),
                    ),
                }
                for label, (domain, action) in methods.items():
                    server_seconds.clear()
                    figures = under_load(server, domain, ca, action)
                    if server_seconds:  # (the server's own time, SSH and the CLI left out)
                        figures["server"] = server_seconds[0]
                    results.setdefault(label, []).append(figures)
        finally:
            server.destroy()
    print_load_table(results, args.runs)
    print("\nrollback, the server's own time (median s): ", end="")
    print(", ".join(
        f"{label}: {statistics.median(r['server'] for r in runs):.2f}"
        for label, runs in results.items() if "server" in runs[0]
    ))  # fmt: skip
    print("targets: to the standby <= 0.5 s wall, without one <= 1.5 s (unloaded)")
    print_load_average(load_before)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Updating a Django site on Apache + mod_wsgi: the usual ways beside onebox's, under load.

One Debian 12 practice server, set up the classic way (tests/e2e/classic.py: Apache 2.4
+ mod_wsgi daemon mode, MariaDB, the inventory project), adopted with `onebox adopt`
and `onebox setup`. Each round, under the same steady load (tests/e2e/load.py: GET and
POST, kept-alive and new connections, 4 clients at 25 req/s each, bounded), in turn:

- with mod_wsgi serving: nothing (steady state), `apachectl graceful`,
  `touch wsgi.py` (mod_wsgi's daemon reload), `systemctl restart apache2`;
- onebox's first deploy (mod_wsgi's lines out, onebox's include in: one graceful reload);
- with onebox serving through Apache: nothing, `onebox deploy` of a code change,
  `onebox rollback`; the move to onebox's Caddy and back (`onebox adopt --switch-to`);
- `onebox adopt --undo` (back to mod_wsgi, for the next round).

The clients send a request once more on a new connection when the server closed their
idle kept-alive connection under it, as browsers do: `failed` counts what still failed
(an HTTP error, a refused or reset new connection), `closed` those closes. Prints, per
method, medians of the wall time, p50/p99/max latency and the longest gap with no
answer, and the failures summed over the rounds. Needs root (practice servers).

    uv run python bench/apache.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import measure, onebox, print_load_average, print_load_table  # noqa: E402
from tests.e2e import classic  # noqa: E402  (the e2e tests' classic site)
from tests.e2e.load import Load  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / classic.APP


def prepare(tmp: Path, name: str) -> tuple[str, Path, Path]:
    """The classic site on a new practice server, adopted and set up (not deployed)."""
    onebox("sandbox", "create", name, "--debian", "12")
    boxes = json.loads(onebox("--json", "sandbox", "list")[1])["result"]
    address = next(box["address"] for box in boxes if box["name"] == name)
    project = tmp / classic.APP
    shutil.copytree(FIXTURE, project)
    cert = tmp / "site.pem"
    cert.write_text(classic.set_up(name, project))
    onebox("adopt", "--host", f"sandbox:{name}", cwd=project)
    onebox("setup", cwd=project)
    return address, project, cert


def under_load(address: str, cert: Path, action: Callable[[], object]) -> dict[str, float]:
    load = Load(
        address,
        classic.DOMAIN,
        cert,
        get_path="/items/",
        post_path="/items/",
        post_answer=(201, ""),
        csrf=False,
        limit=180,
        retry_closed=True,
    )
    return measure(load, action)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {}
    load_before = os.getloadavg()
    name = f"bapache-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            address, project, cert = prepare(Path(tmp), name)
            views = project / "stock" / "views.py"

            def root(command: str) -> Callable[[], object]:
                return lambda: classic.root(name, command)

            def cli(*words: str) -> Callable[[], object]:
                return lambda: onebox(*words, cwd=project)

            def deploy(run: int) -> Callable[[], object]:
                def change_and_deploy() -> None:
                    views.write_text(views.read_text() + f"\n# change {run}\n")
                    onebox("deploy", cwd=project)

                return change_and_deploy

            wsgi = classic.CODE / classic.APP / "wsgi.py"
            for run in range(args.runs):
                methods = {
                    "mod_wsgi: steady state (5 s)": lambda: time.sleep(5),
                    "mod_wsgi: apachectl graceful": root("apachectl graceful"),
                    # mod_wsgi reloads at the next request: the window holds it
                    "mod_wsgi: touch wsgi.py": root(f"touch {wsgi} && sleep 3"),
                    "mod_wsgi: systemctl restart apache2": root("systemctl restart apache2"),
                    "onebox: first deploy (mod_wsgi out, one reload)": cli("deploy"),
                    "onebox: steady state (5 s)": lambda: time.sleep(5),
                    "onebox: deploy through Apache": deploy(run),
                    "onebox: rollback through Apache": cli("rollback"),
                    "onebox: move to Caddy (adopt --switch-to caddy)": cli(
                        "adopt", "--switch-to", "caddy"
                    ),
                    "onebox: back to Apache (adopt --switch-to apache)": cli(
                        "adopt", "--switch-to", "apache"
                    ),
                    "onebox: adopt --undo (back to mod_wsgi)": cli("adopt", "--undo"),
                }
                for label, action in methods.items():
                    results.setdefault(label, []).append(under_load(address, cert, action))
        finally:
            onebox("sandbox", "destroy", name)
    print_load_table(results, args.runs)
    print_load_average(load_before)


if __name__ == "__main__":
    main()

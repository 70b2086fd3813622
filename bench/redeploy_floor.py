#!/usr/bin/env python3
"""A code-only re-deploy beside its floor: what no deploy of this app can go below.

One Debian 12 practice server, examples/mvp with its requirements locked once (hashed
pins, as onebox's hint asks of a project: with ranges and no virtualenv every deploy
locks them again, about 2 s) set up and deployed once; then rounds of: a
re-deploy of a one-line change (the real CLI), and the floor's three parts measured
right after it on the same server, in the same round:

- upload: a new SSH connection that carries the project's files (a tar of them) to the
  server, as the deploy's own upload does;
- one Django start: `django.setup()` in the live release, as the app, with its
  environment (timed on the server);
- one health check: a GET of onebox's `/.onebox/health` on the live slot's socket.

Prints medians with min/max: the deploy's wall time, the same without its probation
(the `[deploy] probation` seconds it watches the new release, 3 by default), the
floor, and their ratio; each server step's median (from the deploy's own step lines);
the host's load average. Needs root (practice servers).

    uv run python bench/redeploy_floor.py --rounds 5
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PracticeServer, example_project, onebox, print_load_average  # noqa: E402
from onebox.lock import GUNICORN  # noqa: E402

APP = "mvp"
STEP = re.compile(r"^ [✓·] (.+?)(?: \(unchanged\))? ([\d.]+)s$")
DJANGO_START = f"""cd /srv/{APP}/current && set -a && . .onebox/release.env && \
. /etc/onebox/{APP}.env && set +a && s=$(date +%s%N) && \
runuser -u {APP} -- env PYTHONPATH=$PWD .venv/bin/python -c 'import django; django.setup()' && \
echo $(( $(date +%s%N) - s ))"""
HEALTH = f"""s=$(date +%s%N) && curl -sf -o /dev/null --unix-socket /run/onebox-{APP}/live.sock \
http://localhost/.onebox/health && echo $(( $(date +%s%N) - s ))"""


def deploy(project: Path) -> tuple[float, dict[str, float]]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "onebox", "deploy"], cwd=project, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"deploy failed:\n{result.stderr}")
    steps = {}
    for line in result.stderr.splitlines():
        found = STEP.match(line)
        if found:
            steps[re.sub(r" \(.*", "", found.group(1))] = float(found.group(2))
    return wall, steps


def on_server(server: PracticeServer, command: str) -> float:
    """Seconds a command measured on the server itself (it prints nanoseconds)."""
    result = subprocess.run([*server.base, command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"on the server, {command!r} failed:\n{result.stderr}")
    return int(result.stdout.split()[-1]) / 1e9


def upload(server: PracticeServer, project: Path) -> float:
    """A fresh SSH connection (no master) carrying the project's files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(project, arcname="release")
    base, fresh = server.base, []
    for i, arg in enumerate(base[:-1]):
        if arg.startswith("Control") or (arg == "-o" and base[i + 1].startswith("Control")):
            continue  # (the bench's own SSH master: the deploy opens a connection of its own)
        fresh.append(arg)
    command = [*fresh, "-o", "ControlPath=none", base[-1]]
    started = time.monotonic()
    subprocess.run([*command, "cat > /dev/null"], input=buffer.getvalue(), check=True)
    return time.monotonic() - started


def pin(project: Path) -> None:
    """requirements.txt as a committed lock has it: every version pinned, with hashes,
    gunicorn among them (a lock without it has onebox lock gunicorn on each deploy)."""
    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text() + GUNICORN + "\n")
    locked = subprocess.run(
        ["uv", "pip", "compile", "--quiet", "--generate-hashes", "--no-header",
         "--python-version", "3.11", "--python-platform", "linux", str(requirements)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    requirements.write_text(locked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()
    server = PracticeServer(f"floor-{os.getpid()}")
    rows: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = example_project(Path(tmp) / APP, server)
            pin(project)
            onebox("setup", cwd=project)
            onebox("deploy", cwd=project)
            views = project / "guestbook" / "views.py"
            for n in range(args.rounds):
                views.write_text(views.read_text() + f"\n# change {n}\n")
                wall, seen = deploy(project)
                for name, seconds in seen.items():
                    steps.setdefault(name, []).append(seconds)
                probation = seen.get("probation", 0.0)
                parts = {
                    "upload": upload(server, project),
                    "one Django start": on_server(server, DJANGO_START),
                    "one health check": on_server(server, HEALTH),
                }
                figures = {
                    "deploy, wall": wall,
                    "deploy without probation": wall - probation,
                    **parts,
                    "floor (the three)": sum(parts.values()),
                }
                for key, value in figures.items():
                    rows.setdefault(key, []).append(value)
    finally:
        server.destroy()
    print(f"\ncode-only re-deploy of examples/mvp, {args.rounds} rounds; medians (min-max)\n")
    print("| what | seconds |")
    print("|---|---|")
    for key, values in rows.items():
        print(f"| {key} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) |")
    pairs = zip(rows["deploy without probation"], rows["floor (the three)"], strict=True)
    ratio = statistics.median(deploy / floor for deploy, floor in pairs)
    print(f"\ndeploy without probation / floor: {ratio:.2f}x (target: deploy <= 4 s)")
    print("\nthe deploy's server steps, medians")
    print("| step | seconds |")
    print("|---|---|")
    for name, values in steps.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    print_load_average(load_before)


if __name__ == "__main__":
    main()

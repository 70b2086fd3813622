#!/usr/bin/env python3
"""How long onebox takes, on fresh practice servers: create, setup, first deploy, re-deploy.

Each run creates a new practice server (from the cached image), then times, with the real
CLI: `setup` on the fresh server, the first `deploy` of examples/mvp, and re-deploys after
a one-line code change. Prints medians over the runs and the ratio of a code-only
re-deploy to a first deploy. Needs root (practice servers).

    uv run python bench/deploy_times.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import onebox as run_onebox  # noqa: E402


def onebox(*args: str, cwd: Path | None = None) -> float:
    return run_onebox(*args, cwd=cwd)[0]


def one_run(index: int, redeploys: int, debian: str) -> dict[str, list[float]]:
    name = f"bench{index}-{os.getpid()}"
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "mvp"
        shutil.copytree(
            ROOT / "examples" / "mvp",
            project,
            ignore=shutil.ignore_patterns("db.sqlite3", "media", "staticfiles"),
        )
        host = ("--host", f"sandbox:{name}")
        try:
            times["sandbox create (cached image)"] = [
                onebox("sandbox", "create", name, "--debian", debian)
            ]
            times["setup, fresh server"] = [onebox("setup", *host, cwd=project)]
            times["setup, second run (no change)"] = [onebox("setup", *host, cwd=project)]
            times["first deploy"] = [onebox("deploy", *host, cwd=project)]
            views = project / "guestbook" / "views.py"
            times["re-deploy, one-line code change"] = []
            for n in range(redeploys):
                views.write_text(views.read_text() + f"\n# change {n}\n")
                times["re-deploy, one-line code change"].append(
                    onebox("deploy", *host, cwd=project)
                )
        finally:
            subprocess.run(
                [sys.executable, "-m", "onebox", "sandbox", "destroy", name], capture_output=True
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redeploys", type=int, default=3, help="re-deploys per run")
    parser.add_argument("--debian", default="12", choices=["12", "13"])
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "onebox", "sandbox", "create", "--help"],
        capture_output=True,
        check=True,
    )
    merged: dict[str, list[float]] = {}
    for index in range(args.runs):
        for key, values in one_run(index, args.redeploys, args.debian).items():
            merged.setdefault(key, []).extend(values)
        print(f"run {index + 1}/{args.runs} done", file=sys.stderr)
    print(
        f"\nonebox timings on Debian {args.debian} practice servers, examples/mvp "
        f"({args.runs} runs)\n"
    )
    print(f"| {'step':<34} | {'n':>2} | {'median':>8} | {'min':>7} | {'max':>7} |")
    print(f"|{'-' * 36}|{'-' * 4}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
    for key, values in merged.items():
        print(
            f"| {key:<34} | {len(values):>2} | {statistics.median(values):>7.2f}s | "
            f"{min(values):>6.2f}s | {max(values):>6.2f}s |"
        )
    first = statistics.median(merged["first deploy"])
    again = statistics.median(merged["re-deploy, one-line code change"])
    print(
        f"\nre-deploy / first deploy: {again / first:.2f}x "
        f"(target: a code-only re-deploy under 10 s: {'met' if again < 10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()

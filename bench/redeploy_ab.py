#!/usr/bin/env python3
"""A code-only re-deploy (or a rollback), this onebox against another checkout of it.

One Debian 12 practice server, examples/mvp set up and deployed once; then re-deploys of
a one-line change, alternating A (this checkout) and B (the other one, run with its own
src/ first on PYTHONPATH) on the same server: A B A B... With --rollback, each re-deploy
(untimed) is followed by a timed `onebox rollback` to the standby it left, by the same
checkout. With --upload-rate (e.g. 20mbit, a VPS's usual upload link), the practice
server's link from this machine is limited to it for the run (a tc token bucket on its
veth, removed at the end). Prints the median of each, the ratio, and the host's load
average before and after (these machines are shared). Needs root (practice servers).

    git worktree add /tmp/before <rev>
    uv run python bench/redeploy_ab.py --other /tmp/before --pairs 5 [--rollback]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PracticeServer, example_project, onebox  # noqa: E402


def deploy(project: Path, host: str, src: Path | None, action: str = "deploy") -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "onebox", action, "--host", host],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"{action} ({src or 'this checkout'}) failed:\n{result.stderr}")
    return time.monotonic() - started


def veth(address: str) -> str:
    """This machine's end of the practice server's link (the route to its address)."""
    route = subprocess.run(
        ["ip", "-o", "route", "get", address], capture_output=True, text=True, check=True
    ).stdout.split()
    return route[route.index("dev") + 1]


def limit_link(address: str, rate: str) -> None:
    """What this machine sends the server (the client's upload) at most `rate`."""
    subprocess.run(
        ["tc", "qdisc", "add", "dev", veth(address), "root", "tbf", "rate", rate,
         "burst", "32kbit", "latency", "400ms"],
        check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="the other checkout")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--rollback", action="store_true", help="time rollbacks instead")
    parser.add_argument("--upload-rate", default="", help="limit the link, e.g. 20mbit")
    args = parser.parse_args()
    other = args.other.resolve() / "src"
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"A": [], "B": []}
    server = PracticeServer(f"ab-{os.getpid()}")
    host = f"sandbox:{server.name}"
    with tempfile.TemporaryDirectory() as tmp:
        project = example_project(Path(tmp) / "mvp", server)
        views = project / "guestbook" / "views.py"
        try:
            onebox("setup", cwd=project)
            deploy(project, host, None)
            if args.upload_rate:
                limit_link(server.address, args.upload_rate)
            for n in range(args.pairs):
                for label, src in (("A", None), ("B", other)):
                    views.write_text(views.read_text() + f"\n# change {label}{n}\n")
                    seconds = deploy(project, host, src)
                    if args.rollback:
                        seconds = deploy(project, host, src, "rollback")
                    times[label].append(seconds)
        finally:
            if args.upload_rate:
                subprocess.run(["tc", "qdisc", "del", "dev", veth(server.address), "root"])
            server.destroy()
    load_after = os.getloadavg()
    a, b = statistics.median(times["A"]), statistics.median(times["B"])
    what = "rollback to the standby" if args.rollback else "code-only re-deploy"
    what += f" (upload link {args.upload_rate})" if args.upload_rate else ""
    print(f"\n{what} of examples/mvp, {args.pairs} pairs, interleaved A B A B\n")
    print("| onebox | median | min | max |")
    print("|---|---|---|---|")
    for label, what in (("A", "this checkout"), ("B", str(args.other))):
        values = times[label]
        print(
            f"| {label}: {what} | {statistics.median(values):.2f} s | {min(values):.2f} s | "
            f"{max(values):.2f} s |"
        )
    print(f"\nA / B: {a / b:.2f}x")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in load_after)}")


if __name__ == "__main__":
    main()

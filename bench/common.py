"""What the benchmarks share: the real CLI, practice servers, copies of examples/mvp."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SANDBOXES = Path("/var/lib/onebox/sandboxes")


def onebox(*args: str, cwd: Path | None = None) -> tuple[float, str]:
    """Run the onebox CLI; (seconds it took, its stdout). A failure ends the benchmark."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "onebox", *args], cwd=cwd, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"onebox {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return time.monotonic() - started, result.stdout


class PracticeServer:
    """A practice server made for the run, reached with its own key over one SSH master."""

    def __init__(self, name: str, debian: str = "12", create: bool = True) -> None:
        self.name = name
        if create:
            onebox("sandbox", "create", name, "--debian", debian)
        boxes = json.loads(onebox("--json", "sandbox", "list")[1])["result"]
        self.address = next(box["address"] for box in boxes if box["name"] == name)
        box = SANDBOXES / name
        self.base = ["ssh", "-i", str(box / "id_ed25519"), "-o", "BatchMode=yes"]
        self.base += ["-o", f"UserKnownHostsFile={box / 'known_hosts'}"]
        self.base += ["-o", "ControlMaster=auto", "-o", f"ControlPath=/tmp/bench-{name}-%C"]
        self.base += ["-o", "ControlPersist=300", f"root@{self.address}"]

    def ssh(self, command: str, input: str | None = None) -> float:
        """Run a command on the server; the seconds it took (SSH included)."""
        started = time.monotonic()
        result = subprocess.run(
            [*self.base, command], input=input, capture_output=True, text=True, timeout=3600
        )
        if result.returncode != 0:
            sys.exit(f"ssh {command!r} failed:\n{result.stderr}")
        return time.monotonic() - started

    def destroy(self) -> None:
        subprocess.run([*self.base[:-1], "-O", "exit", self.base[-1]], capture_output=True)
        onebox("sandbox", "destroy", self.name)


def example_project(
    target: Path,
    server: PracticeServer,
    name: str = "mvp",
    domain: str = "",
    engine: str = "",
    harden_ssh: bool = False,
) -> Path:
    """A copy of examples/mvp pointed at the server (and renamed, with a domain, an engine)."""
    shutil.copytree(
        ROOT / "examples" / "mvp",
        target,
        ignore=shutil.ignore_patterns("db.sqlite3", "media", "staticfiles", "__pycache__"),
    )
    config = target / "onebox.toml"
    text = config.read_text().replace('name = "mvp"', f'name = "{name}"')
    text = text.replace('host = "sandbox:demo"', f'host = "sandbox:{server.name}"')
    text = text.replace('domain = ""', f'domain = "{domain}"')
    if engine:
        text = text.replace('engine = "sqlite"', f'engine = "{engine}"')
    if not harden_ssh:
        # The benchmarks time raw commands as root over SSH beside onebox's: keep root login.
        text = text.replace('user = "onebox"\n', "")
        text += (
            '\n[security]\nskip = { ssh = "the benchmark runs raw commands as root over SSH" }\n'
        )
    config.write_text(text)
    return target


def measure(load: Any, action: Any) -> dict[str, float]:
    """`action` under `load` (tests/e2e/load.py), with 2 s of steady load either side."""
    load.start(settle=2)
    started = time.monotonic()
    action()
    wall = time.monotonic() - started
    load.stop(settle=2)
    return load_figures(load, wall)


def load_figures(load: Any, wall: float) -> dict[str, float]:
    """What a bench prints of one change under tests/e2e/load.py's load."""
    latencies = sorted(load.latencies)
    return {
        "wall": wall,
        "answered": load.total,
        "failed": len(load.failures),
        "closed": len(load.closed),
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        "max": latencies[-1] * 1000,
        "gap": load.longest_gap * 1000,
    }


def print_load_table(results: dict[str, list[dict[str, float]]], rounds: int) -> None:
    """Per method: medians over the rounds, and the failures and closes summed."""
    print(f"\n{rounds} rounds, medians (failed and closed: the sums over the rounds)")
    print("| method | wall s | answered | failed | closed | p50 ms | p99 ms | max ms | gap ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        failed = sum(int(r["failed"]) for r in runs)
        closed = sum(int(r["closed"]) for r in runs)
        print(
            f"| {label} | {med['wall']:.2f} | {med['answered']:.0f} | {failed} | {closed} | "
            f"{med['p50']:.0f} | {med['p99']:.0f} | {med['max']:.0f} | {med['gap']:.0f} |"
        )


def print_load_average(before: tuple[float, float, float]) -> None:
    print(f"\nload average before: {' '.join(f'{x:.2f}' for x in before)}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

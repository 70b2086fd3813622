#!/usr/bin/env python3
"""How hard a server onebox leaves, against a stock Debian one, measured in one run.

Two fresh Debian practice servers: one as debootstrap made it (plus lynis), one after
`onebox setup` and `onebox deploy` of examples/mvp (kept with its default [security]).
On both: Lynis' hardening index and warnings, `systemd-analyze security` of the units
onebox writes, and the TCP ports that answer from this machine. Needs root.

    uv run python bench/hardening.py [--debian 12]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PracticeServer, example_project, onebox  # noqa: E402
from onebox import sandbox  # noqa: E402
from onebox.audit import COMMON_PORTS, open_ports  # noqa: E402


def console(name: str, command: str, timeout: float = 1200) -> str:
    argv = sandbox.load(name).console(command)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout


def lynis(name: str) -> tuple[int, list[str]]:
    console(name, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lynis >/dev/null")
    console(name, "lynis audit system --quick --no-colors --quiet >/dev/null 2>&1")
    report = console(name, "cat /var/log/lynis-report.dat")
    index = re.search(r"^hardening_index=(\d+)", report, re.MULTILINE)
    warnings = re.findall(r"^warning\[\]=([^|]+)\|([^|]*)", report, re.MULTILINE)
    return (int(index.group(1)) if index else -1), [f"{t} {m}".strip() for t, m in warnings]


def exposure(name: str, units: list[str]) -> dict[str, str]:
    found = {}
    for unit in units:
        out = console(name, f"systemd-analyze security --no-pager {unit} 2>&1 | tail -1")
        match = re.search(r": (\d+\.\d+) (\S+)", out)
        found[unit] = f"{match.group(1)} {match.group(2)}" if match else "n/a"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debian", default="12", choices=["12", "13"])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onebox-bench-"))
    stock = PracticeServer(f"bstock-{os.getpid()}", args.debian)
    hardened = PracticeServer(f"bhard-{os.getpid()}", args.debian)
    try:
        project = example_project(tmp / "mvp", hardened, harden_ssh=True)
        onebox("setup", cwd=project)
        onebox("deploy", cwd=project)
        rows = []
        for label, server in (("stock Debian", stock), ("after onebox setup", hardened)):
            index, warnings = lynis(server.name)
            ports = open_ports(server.address, COMMON_PORTS)
            rows.append((label, index, warnings, ports))
        units = ["onebox-mvp@blue.service", "onebox-mvp-backup.service"]
        units.append("onebox-mvp-verify.service")
        scores = exposure(hardened.name, units)
        version = console(stock.name, "lynis show version").strip()
    finally:
        stock.destroy()
        hardened.destroy()
    print(f"\nDebian {args.debian}, Lynis {version} (quick audit), one run")
    print("| server | Lynis hardening index | Lynis warnings | TCP ports open (of 54 common) |")
    print("|---|---|---|---|")
    for label, index, warnings, ports in rows:
        shown = "; ".join(warnings) or "-"
        print(f"| {label} | {index} | {len(warnings)}: {shown} | {', '.join(map(str, ports))} |")
    print("\n| unit onebox writes | systemd-analyze security exposure |")
    print("|---|---|")
    for unit, score in scores.items():
        print(f"| {unit} | {score} |")


if __name__ == "__main__":
    main()

"""What the benchmarks share: the real CLI, practice servers, copies of examples/mvp."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

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

    def __init__(self, name: str, debian: str = "12") -> None:
        self.name = name
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

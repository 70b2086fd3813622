"""Debian's podman on this machine, for running what `onebox export kubernetes` wrote.

Its own storage in a temp folder (nothing shared with other podman use, all of it gone
after), runc with cgroupfs (this host's hybrid cgroups refuse crun) and no default
ulimits (the host's hard limit on open files is below podman's default).

podman 4.3 (Debian 12) plays Pods, Deployments, ConfigMaps and claims, not Jobs, and a
Secret in a kube file is broken there (containers/podman#17071), so `playable` adapts the
export for it: the migrate Job's pod as a Pod, the Secret as a ConfigMap of its values,
and the proxy's port published on 127.0.0.1. Everything else is played as written.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

CONF = """[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class Podman:
    def __init__(self, folder: Path) -> None:
        if not shutil.which("podman"):
            raise AssertionError("podman is missing: scripts/install-host-deps installs it")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "containers.conf").write_text(CONF)
        self.env = {
            "CONTAINERS_CONF": str(folder / "containers.conf"),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        # (podman wants its run root's path under 50 characters: pytest's are longer)
        self.runroot = Path(tempfile.mkdtemp(prefix="onebox-podman-"))
        self.base = ["podman", "--root", str(folder / "storage"), "--runroot", str(self.runroot)]

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        out = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {out.stdout}\n{out.stderr}")
        return out.stdout

    def play(self, objects: list[dict[str, Any]], name: str) -> None:
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        self.run("kube", "play", str(path))

    def wait_exited(self, container: str, seconds: float = 120) -> tuple[int, str]:
        """(exit code, logs) of a container, once it has exited."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = self.run(
                "inspect", container, "--format", "{{.State.Status}} {{.State.ExitCode}}"
            )
            status, code = state.split()
            if status == "exited":
                return int(code), self.run("logs", container, check=False)
            time.sleep(0.5)
        raise AssertionError(f"{container} still runs after {seconds} s")

    def cleanup(self) -> None:
        self.run("pod", "rm", "--all", "--force", check=False)
        self.run("system", "reset", "--force", check=False, timeout=120)
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


def playable(
    objects: list[dict[str, Any]], secret: dict[str, Any], port: int
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(the settings and volume, the migrate Job as a Pod, the Deployments) for podman 4.3."""
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    secret_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": secret["metadata"],
        "data": values,
    }
    shared = [o for o in objects if o["kind"] in ("ConfigMap", "PersistentVolumeClaim")]
    job = next(o for o in objects if o["kind"] == "Job")
    pod_spec = _secret_as_config_map(job["spec"]["template"]["spec"])
    migrate = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": job["metadata"]["name"]},
        "spec": pod_spec,
    }
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    for deployment in deployments:
        spec = _secret_as_config_map(deployment["spec"]["template"]["spec"])
        # podman 4.3 restarts an init container that exited under "Always" (and then
        # cannot remove it): OnFailure runs it once, as a cluster does
        spec["restartPolicy"] = "OnFailure"
        for container in spec["containers"]:
            for published in container.get("ports", []):
                published.update(hostPort=port, hostIP="127.0.0.1")
    return [*shared, secret_map], migrate, deployments


def _secret_as_config_map(spec: dict[str, Any]) -> dict[str, Any]:
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                source["configMapRef"] = source.pop("secretRef")
    return spec

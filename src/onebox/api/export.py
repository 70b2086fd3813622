"""`onebox export kubernetes`: the live release as an OCI image and Kubernetes manifests.

The server builds the image (agent/export.py: the release as it runs there, on a base of
its own Debian release); this side downloads it, reads the app's secrets into a Secret
manifest (written 0600, never printed) and writes the manifests (onebox/kubernetes.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from onebox import kubernetes, remote
from onebox.agent.requests import ExportRequest
from onebox.api.server import Reporter, Result, connect, download
from onebox.config import Project, write_atomically
from onebox.errors import ConfigError
from onebox.transport import SSH

# registry[:port]/path/name, lowercase, no tag or digest (the release id is the tag)
IMAGE_NAME = re.compile(
    r"^([\w.-]+(:\d+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
)
IMAGE_FILE = re.compile(r"^image-\d{8}-\d{6}-\d{3}\.tar$")
# What the folder's .gitignore keeps out of git: the secrets and the image.
IGNORED = "# written by `onebox export kubernetes`: secrets and images stay out of git\n"
IGNORED += "*-secret.yaml\nimage-*.tar\n*.partial\n.*.onebox-tmp\n"


def export_kubernetes(
    project: Project, host: str | None, reporter: Reporter, *, output: Path, image: str = ""
) -> Result:
    """Export the live release to `output`: image-RELEASE.tar (an oci-archive), APP.yaml
    (everything but the secrets) and APP-secret.yaml. `image`: the name the cluster pulls
    it by (registry/name, tagged with the release id); default APP."""
    config = project.config
    app = config.app.name
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is a file, not a folder", hint="name a folder for the export")
    if image and not IMAGE_NAME.match(image):
        raise ConfigError(
            f"--image {image!r} is not an image name like registry.example.com/shop",
            hint="lowercase, without a tag or digest: onebox tags the image with the release id",
        )
    workdir = str(Path(config.app.manage).parent).strip(".") or "."
    # (checked before the server spends a minute on the image)
    for name, schedule in config.schedule.items():
        try:
            kubernetes.cron_schedule(schedule.when)
        except ValueError as exc:
            raise ConfigError(f"[schedule] {name}: {exc}") from None
    with connect(project, host, reporter) as server:
        request = ExportRequest(app=app, workdir=workdir)
        exported = remote.call(server.ssh, remote.pack(request), reporter.event)
        output.mkdir(parents=True, exist_ok=True)
        archive = output / f"image-{exported['release']}.tar"
        download(server.ssh, ["export", app, "image"], archive, "downloading the image")
        secrets = _secrets(server.ssh, app)
    name = f"{image or app}:{exported['release']}"
    objects, secret, warnings = kubernetes.manifests(config, exported, name, secrets)
    manifests = output / f"{app}.yaml"
    secret_file = output / f"{app}-secret.yaml"
    write_atomically(manifests, kubernetes_yaml(objects, app), 0o644)
    write_atomically(secret_file, kubernetes_yaml([secret], app, secret=True), 0o600)
    write_atomically(output / ".gitignore", IGNORED, 0o644)
    for old in output.iterdir():  # the image of an earlier export: 70 MB or more each
        if IMAGE_FILE.match(old.name) and old != archive:
            old.unlink()
    return {
        "release": exported["release"],
        "image": name,
        "image_file": str(archive),
        "bytes": archive.stat().st_size,
        "digest": exported["digest"],
        "base_packages": exported["packages"],
        "base_reused": exported["base_reused"],
        "manifests": str(manifests),
        "secret_file": str(secret_file),
        "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects],
        "secret_keys": sorted(secrets),
        "warnings": warnings,
        "migrate_job": next(o["metadata"]["name"] for o in objects if o["kind"] == "Job"),
        "seconds_on_server": exported["seconds"],
    }


def kubernetes_yaml(objects: list[dict[str, Any]], app: str, secret: bool = False) -> str:
    head = f"# {app}: written by `onebox export kubernetes`; edit freely, re-export to update.\n"
    if secret:
        head += "# The app's secrets (base64, not encrypted): keep this file out of git.\n"
    text = yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True, width=100)
    return head + str(text)


def _secrets(ssh: SSH, app: str) -> dict[str, str]:
    result = ssh.run(ssh.agent_command(["export", app, "secrets"]))
    values = json.loads(result.stdout)
    return {str(k): str(v) for k, v in values.items()}

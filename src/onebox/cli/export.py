"""Exports: the live release for another platform (Kubernetes)."""

from __future__ import annotations

from pathlib import Path

import click

from onebox import api, views
from onebox.cli.base import Context, command, host_option, main


@main.group()
def export() -> None:
    """Take the live release elsewhere: an image and manifests for Kubernetes."""


@export.command("kubernetes")
@host_option
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="The folder to write to (default: kubernetes/ in the project).",
)
@click.option(
    "--image",
    "image",
    default="",
    help="The name the cluster pulls the image by, e.g. registry.example.com/shop "
    "(tagged with the release id; default: the app's name).",
)
@command
def export_kubernetes(ctx: Context, host: str | None, output: Path | None, image: str) -> None:
    """Write the live release as an OCI image and Kubernetes manifests."""
    project = ctx.project()
    target = output or project.root / "kubernetes"
    result = api.export_kubernetes(project, host, ctx.reporter, output=target, image=image)
    ctx.done(result, views.exported_text(result))

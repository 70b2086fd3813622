"""Practice servers: real Debian with systemd, in a container on this machine."""

from __future__ import annotations

import click

from onebox import sandbox, views
from onebox.cli.base import Context, command, main


@main.group("sandbox")
def sandbox_group() -> None:
    """Local practice servers: real Debian with systemd, in a container (root, Linux)."""


@sandbox_group.command("create")
@click.argument("name")
@click.option(
    "--debian", type=click.Choice(sorted(sandbox.SUITES)), default="12", show_default=True
)
@command
def sandbox_create(ctx: Context, name: str, debian: str) -> None:
    """Boot a practice server; target it with --host sandbox:NAME."""
    box = sandbox.create(name, debian, log=ctx.reporter.log)
    ctx.done(
        {"name": box.name, "address": box.address, "debian": box.debian, "host": f"sandbox:{name}"},
        f"practice server {name} is up at {box.address} (Debian {debian})\n"
        f"use it with --host sandbox:{name}",
    )


@sandbox_group.command("list")
@command
def sandbox_list(ctx: Context) -> None:
    """List practice servers."""
    boxes = sandbox.list_all()
    data = [
        {"name": b.name, "address": b.address, "debian": b.debian, "running": b.running}
        for b in boxes
    ]
    ctx.done(data, views.sandboxes_table(data))


@sandbox_group.command("start")
@click.argument("name")
@command
def sandbox_start(ctx: Context, name: str) -> None:
    """Boot a stopped practice server again (its disk is kept)."""
    box = sandbox.start(name, log=ctx.reporter.log)
    ctx.done(
        {"name": box.name, "address": box.address, "running": True},
        f"practice server {name} is up at {box.address}",
    )


@sandbox_group.command("stop")
@click.argument("name")
@command
def sandbox_stop(ctx: Context, name: str) -> None:
    """Power a practice server off, keeping its disk (`sandbox start` boots it)."""
    sandbox.stop(name, log=ctx.reporter.log)
    ctx.done({"name": name, "running": False}, None)


@sandbox_group.command("destroy")
@click.argument("name")
@command
def sandbox_destroy(ctx: Context, name: str) -> None:
    """Stop a practice server and delete it."""
    sandbox.destroy(name, log=ctx.reporter.log)
    ctx.done({"destroyed": name}, None)

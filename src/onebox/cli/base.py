"""What every command shares: the context (project, reporter), the one error handler,
the common options, and the `onebox` group the command modules add to."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from onebox import __version__
from onebox.config import Project, load_project
from onebox.errors import ExitCode, OneboxError
from onebox.output import HumanReporter, JsonReporter
from onebox.views import View


class Context:
    def __init__(
        self, as_json: bool, verbose: bool, project_dir: Path | None, host: str | None = None
    ) -> None:
        self.host = host
        self.json = as_json
        self.verbose = verbose
        self.project_dir = project_dir
        self.reporter: HumanReporter | JsonReporter = (
            JsonReporter() if as_json else HumanReporter(verbose)
        )

    def project(self) -> Project:
        return load_project(self.project_dir)

    def done(self, data: Any, view: View | None) -> None:
        """The result: as data with --json, else as its view (text, or a table)."""
        if isinstance(self.reporter, JsonReporter):
            self.reporter.emit(data)
        elif view is not None:
            self.reporter.result(view)


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body with onebox's one error handler: a message and an exit code."""

    @functools.wraps(func)
    @click.pass_obj
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> None:
        if "host" in kwargs and not kwargs["host"] and not getattr(func, "own_host", False):
            kwargs["host"] = ctx.host  # `onebox --host X status` works as well
        try:
            code = func(ctx, *args, **kwargs)
        except OneboxError as error:
            ctx.reporter.error(error)
            sys.exit(int(error.exit_code))
        except KeyboardInterrupt:
            ctx.reporter.error(
                OneboxError(
                    "interrupted: this client stopped following",
                    hint="a setup, deploy, rollback, restore or backup already under way goes "
                    "on to its end on the server (or undoes itself if a step fails); "
                    "`onebox status` and `onebox history` show the outcome. To stop a "
                    "deploy before it moves traffic: `onebox cancel`; after: `onebox rollback`",
                )
            )
            sys.exit(130)
        except Exception as error:  # a bug: one line, and the traceback only when asked
            if ctx.verbose or os.environ.get("ONEBOX_DEBUG"):
                raise
            ctx.reporter.error(
                OneboxError(f"internal error: {error!r}", hint="rerun with --verbose and report it")
            )
            sys.exit(int(ExitCode.FAILED))
        sys.exit(code or 0)

    return wrapper


def keeps_host(func: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose --host is a value of its own (init writes it), not the server."""
    func.own_host = True  # type: ignore[attr-defined]  # (read by `command`)
    return func


def fail_if(failed: object) -> None:
    """A result that is a failure for scripts (the site down, a check failed): exit 1."""
    if failed:
        sys.exit(int(ExitCode.FAILED))


host_option = click.option(
    "--host",
    help="Server to use instead of [server] host "
    "(an address, user@host, an ssh alias, or sandbox:NAME).",
)
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Say what each step would change; change nothing."
)


def lines_option(default: int, what: str) -> Callable[..., Any]:
    """-n/--lines: how many to show (1 or more: a negative count reached the server)."""
    return click.option(
        "-n",
        "--lines",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=f"How many {what} to show.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onebox")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document (for scripts and CI)."
)
@click.option("-v", "--verbose", is_flag=True, help="More detail, and tracebacks of onebox bugs.")
@click.option(
    "-C",
    "--project",
    "project_dir",
    type=click.Path(path_type=Path),
    help="The Django project's folder (default: the current one).",
)
@host_option
@click.pass_context
def main(
    click_ctx: click.Context,
    as_json: bool,
    verbose: bool,
    project_dir: Path | None,
    host: str | None,
) -> None:
    """Run a Django project in production on one Debian server you own."""
    click_ctx.obj = Context(as_json, verbose, project_dir, host)

"""The `onebox` command line: parse, call the library API (onebox.api), show the result
(onebox.views). One module per noun: app, release, backup, db, export, security, sandbox."""

from onebox.cli import (  # noqa: F401 (they add the commands)
    app,
    backup,
    db,
    export,
    release,
    sandbox,
    security,
)
from onebox.cli.base import main

__all__ = ["main"]

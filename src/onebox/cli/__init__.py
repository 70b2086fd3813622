"""The `onebox` command line: parse, call the library API (onebox.api), show the result
(onebox.views). One module per noun: app, release, backup, db, security, sandbox."""

from onebox.cli import app, backup, db, release, sandbox, security  # noqa: F401 (they add the commands)
from onebox.cli.base import main

__all__ = ["main"]

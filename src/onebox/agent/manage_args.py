"""The arguments of `onebox manage`, carried to the server without any command line.

`onebox manage -- createsuperuser --password s3cret` would otherwise put the password in
ssh's and sudo's view of the command (sudo logs it to the journal), in systemd-run's and
in the python process's argv (`ps`). Instead the client first sends the arguments inside
an agent request (the tar stream on stdin, like `env set`'s values): this action writes
them to a file of the app's, 0600, under its runtime directory, and answers a token. The
interactive `onebox-agent manage APP MANAGE_PY --args-from TOKEN` then starts LAUNCHER,
which reads the file, deletes it, and runs manage.py with those arguments in sys.argv.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import time
from pathlib import Path

from .paths import AppPaths
from .protocol import AgentError, ExitCode
from .requests import ManageArgsRequest

TOKEN = re.compile(r"^[0-9a-f]{32}$")
PREFIX = ".manage-args-"
MAX_BYTES = 256 * 1024
STALE_SECONDS = 600

# Run by the app's Python as `python -c LAUNCHER /srv/APP/current/manage.py`.
LAUNCHER = """\
import json, os, runpy, sys
path = os.environ.pop("ONEBOX_MANAGE_ARGS")
with open(path) as stashed:
    arguments = json.load(stashed)
os.unlink(path)
manage = sys.argv[1]
sys.argv = [manage, *arguments]
sys.path[0] = os.path.dirname(manage)
runpy.run_path(manage, run_name="__main__")
"""

# `onebox run -- COMMAND`: the same, for any command (found on PATH: the venv first).
RUN_LAUNCHER = """\
import json, os, sys
path = os.environ.pop("ONEBOX_MANAGE_ARGS")
with open(path) as stashed:
    arguments = json.load(stashed)
os.unlink(path)
try:
    os.execvp(arguments[0], arguments)
except OSError as exc:
    print(f"onebox run: cannot run {arguments[0]!r}: {exc.strerror}", file=sys.stderr)
    raise SystemExit(127) from None
"""


def path_for(paths: AppPaths, token: str) -> Path:
    return paths.run / f"{PREFIX}{token}"


def stash(request: ManageArgsRequest) -> dict[str, str]:
    paths = AppPaths(request.app)
    arguments = request.args
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise AgentError("manage.py arguments must be a list of strings", code=ExitCode.CONFIG)
    data = json.dumps(arguments).encode()
    if len(data) > MAX_BYTES:
        raise AgentError("manage.py arguments over 256 KB", code=ExitCode.CONFIG)
    if not paths.run.is_dir() or not paths.current.is_symlink():
        raise AgentError(
            f"{paths.app} has no live release on this server",
            hint="run `onebox deploy` first",
            code=ExitCode.CONFIG,
        )
    remove_stale(paths)
    token = secrets.token_hex(16)
    target = path_for(paths, token)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        user = pwd.getpwnam(paths.app)
        os.fchown(fd, user.pw_uid, user.pw_gid)
        os.write(fd, data)
    finally:
        os.close(fd)
    return {"token": token}


def remove_stale(paths: AppPaths) -> None:
    """Arguments of a `manage` that never started (its connection dropped, say)."""
    for old in paths.run.glob(PREFIX + "*"):
        try:
            if time.time() - old.lstat().st_mtime > STALE_SECONDS:
                old.unlink()
        except FileNotFoundError:
            pass

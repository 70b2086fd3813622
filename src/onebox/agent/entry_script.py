#!/usr/bin/python3 -I
"""/usr/local/sbin/onebox-agent: the one command onebox's deploy user may run as root.

`onebox setup` installs this file and /etc/sudoers.d/onebox. Two forms:

    onebox-agent                   the agent: a tar stream on stdin (onebox's code and the
                                   request), as `python3 -c BOOTSTRAP` runs it for root
    onebox-agent COMMAND ARGS...   logs, manage, run, dbshell, ca or dump: the command line is
                                   built by onebox's installed agent from checked arguments

Standard library only; `-I` keeps the caller's environment and paths out of it.
"""

import shutil
import sys
import tarfile
import tempfile
from typing import Any

INSTALLED_AGENT = "/opt/onebox/agent"


def stream() -> int:
    workdir = tempfile.mkdtemp(prefix="onebox-agent-")
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            safe: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            tar.extractall(workdir, **safe)
        sys.path.insert(0, workdir)
        from onebox_agent.launch import launch

        return launch(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def command(argv: list[str]) -> int:
    sys.path.insert(0, INSTALLED_AGENT)
    from onebox_agent.commands import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]) if len(sys.argv) > 1 else stream())

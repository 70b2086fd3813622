#!/usr/bin/python3 -I
"""/usr/local/sbin/onebox-agent: the one command onebox's deploy user may run as root.

`onebox setup` installs this file and /etc/sudoers.d/onebox. Two forms:

    onebox-agent                   the agent: a tar stream on stdin (onebox's code and the
                                   request); before setup (and for root) the client runs
                                   this same file as `python3 -I -c SOURCE`
    onebox-agent COMMAND ARGS...   logs, manage, run, dbshell, ca or dump: the command line is
                                   built by onebox's installed agent from checked arguments

Before it hands over, it writes the operation into the app's history itself (see
history.py): the agent a client ships runs only after that line exists, so no client
can leave an operation out. Standard library only, and self-contained (it is copied on
its own); `-I` keeps the caller's environment and paths out of it.
"""

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from typing import Any

INSTALLED_AGENT = "/opt/onebox/agent"  # (paths.AGENT_HOME; this file stands alone)
HISTORY = "/var/log/onebox"  # (paths.LOGS)
AGENT_CACHE = "/var/cache/onebox/agent"  # (paths.AGENT_CACHE)
# A compiled agent nobody ran for this long is removed (each client version has its own).
CACHE_UNUSED_DAYS = 7
# What the server's history records as it starts (history.AUDITED and the access to
# data: `env list --reveal`); the outcome is added by the agent when it ends.
AUDITED = {
    "setup", "deploy", "rollback", "restore", "backup", "verify", "env-set", "env-unset",
    "maintenance", "cancel", "confirm",
}  # fmt: skip


def stream() -> int:
    workdir = tempfile.mkdtemp(prefix="onebox-agent-")
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            safe: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            tar.extractall(workdir, **safe)
        started(os.path.join(workdir, "request.json"))
        sys.path.insert(0, compiled_agent(workdir) or workdir)
        from onebox_agent.launch import launch

        return launch(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compiled_agent(workdir: str) -> str | None:
    """The folder of the shipped agent's compiled copy, made on its first run.

    Each call ships the agent's sources; compiling them again on every call cost each
    deploy about 0.28 s (two calls: the facts, then the deploy). The copy is
    named by a hash of the sources it holds, computed here (never taken from the client),
    and is root's alone. None (run from the temp dir, as before) when that cannot be.
    """
    source = os.path.join(workdir, "onebox_agent")
    if os.geteuid() != 0 or not os.path.isdir(source):
        return None
    try:
        home = os.path.join(AGENT_CACHE, _sources_hash(source))
        if not os.path.isdir(home):
            _compile_into(source, home)
        os.utime(home)  # last used: what the pruning goes by
        _prune(keep=home)
        return home
    except OSError:
        return None


def _sources_hash(source: str) -> str:
    digest = hashlib.sha256()
    for name in _sources(source):
        with open(os.path.join(source, name), "rb") as handle:
            data = handle.read()
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()[:32]


def _sources(source: str) -> list[str]:
    return sorted(name for name in os.listdir(source) if name.endswith(".py"))


def _compile_into(source: str, home: str) -> None:
    """Copied and compiled in a folder of its own, then renamed into place whole: a run
    beside this one sees the compiled agent complete or not at all."""
    os.makedirs(AGENT_CACHE, mode=0o700, exist_ok=True)
    os.chmod(AGENT_CACHE, 0o700)
    new = tempfile.mkdtemp(prefix=".new-", dir=AGENT_CACHE)
    try:
        package = os.path.join(new, "onebox_agent")
        os.mkdir(package)
        for name in _sources(source):  # what the hash covers, nothing else
            shutil.copy2(os.path.join(source, name), package)
        import compileall  # (here: most calls find the agent compiled already)
        import py_compile

        compiled = compileall.compile_dir(
            package,
            quiet=2,  # (standard output carries the agent's events)
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
        if not compiled:  # a full disk, most likely
            raise OSError("the agent could not be compiled")
        try:
            os.rename(new, home)
        except OSError:
            if not os.path.isdir(home):  # (else: a run beside this one made it first)
                raise
    finally:
        shutil.rmtree(new, ignore_errors=True)


def _prune(keep: str) -> None:
    now = time.time()
    for name in os.listdir(AGENT_CACHE):
        path = os.path.join(AGENT_CACHE, name)
        try:
            age = now - os.stat(path).st_mtime
        except OSError:  # (removed by a run beside this one)
            continue
        unused = age > CACHE_UNUSED_DAYS * 86400 or (name.startswith(".new-") and age > 3600)
        if path != keep and unused:
            shutil.rmtree(path, ignore_errors=True)


def started(request_file: str) -> None:
    """The history line of an operation as it begins (never its secrets: names only)."""
    try:
        with open(request_file) as handle:
            request = json.load(handle)
    except (OSError, ValueError):
        return  # the agent reports a broken request itself
    action, app = request.get("action"), request.get("app")
    revealing = action == "env-list" and request.get("reveal")
    if not app or request.get("dry_run") or (action not in AUDITED and not revealing):
        return
    entry = {"action": action, "by": request.get("by", "?"), "run": request.get("run", "")}
    if revealing:
        entry["detail"] = "secret values shown"
    record(app, {**entry, "result": "started"})


def record(app: str, fields: dict[str, Any]) -> None:
    """One line appended to the app's history (a failure to write never stops the work)."""
    login = os.environ.get("SUDO_USER") or "root"
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "login": login}
    try:
        os.makedirs(HISTORY, mode=0o700, exist_ok=True)
        path = os.path.join(HISTORY, f"{app}.history.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps({**entry, **fields}) + "\n").encode())  # one write
        finally:
            os.close(fd)
    except OSError:
        pass


def command(argv: list[str]) -> int:
    sys.path.insert(0, INSTALLED_AGENT)
    from onebox_agent.commands import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]) if len(sys.argv) > 1 else stream())

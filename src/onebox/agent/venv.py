"""The release's virtualenv: one per lock (and Python), made once, shared by releases.

A code-only deploy finds the virtualenv of its lock hash complete and installs nothing.
[server] python has uv install that Python version (once per server) and build the
virtualenv on it instead of the system Python.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from . import baseline
from .paths import CACHE, TOOLS, UV, AppPaths
from .protocol import AgentError, emit
from .requests import DeployRequest
from .system import apt_install, run, tail


def ensure_venv(paths: AppPaths, request: DeployRequest) -> tuple[Path, bool]:
    """One virtualenv per lock hash: a code-only deploy reuses it and installs nothing."""
    venv = paths.venvs / request.lock_hash
    if (venv / ".onebox-complete").is_file():
        compile_bytecode(venv)  # (one made before onebox compiled them: once)
        return venv, False
    if venv.exists():
        shutil.rmtree(venv)
    uv = str(UV)
    env = {
        "UV_CACHE_DIR": str(CACHE / "uv"),
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
    }
    lock = paths.releases / request.release_id / ".onebox" / "requirements.txt"
    python = managed_python(uv, env, request) if request.python else "/usr/bin/python3"
    run(
        [uv, "venv", "--quiet", "--python", python, str(venv)],
        env=env,
        what="creating the virtualenv",
    )
    install = [uv, "pip", "install", "--quiet", "--require-hashes"]
    install += ["--python", str(venv / "bin" / "python"), "-r", str(lock)]
    result = run(install, env=env, check=False, timeout=1800)
    built = BUILD_FAILED.search(result.stdout + result.stderr)
    installed = apt_install(TOOLCHAIN) if result.returncode != 0 and built else []
    if installed and built:
        # a package with no wheel for this server builds from source: with a compiler
        # and Python's headers, once (then the compilers are root's again)
        emit("log", text=f"{built[1]} builds from source: installed {', '.join(installed)}")
        if "system" not in request.security_skip:
            baseline.restrict_compilers()
        result = run(install, env=env, check=False, timeout=1800)
    if result.returncode != 0:
        raise install_failure(result.stdout + "\n" + result.stderr)
    run(["chmod", "-R", "go-w", str(venv)])
    compile_bytecode(venv)
    (venv / ".onebox-complete").touch()
    return venv, True


# Python compiles each module it imports unless a compiled copy lies beside it, and the
# app's processes cannot write one (read-only releases, PYTHONDONTWRITEBYTECODE): without
# them every Django start of a deploy (settings, checks, collectstatic, migrate, each
# worker) compiled Django again. Measured on 2 cores: django.setup() 1.0 s -> 0.33 s.
BYTECODE = ".onebox-bytecode"
# (never the release's links out, its VCS folder or front-end packages)
SKIPPED = r"(^|/)(\.git|node_modules|\.venv)(/|$)"


def compile_bytecode(venv: Path) -> None:
    """The virtualenv's modules compiled, once. A file that does not compile (a
    package's Python 2 test data, say) stays as it is: importing it fails as before."""
    if (venv / BYTECODE).is_file():
        return
    python = str(venv / "bin" / "python")
    run([python, "-m", "compileall", "-q", "-j0", str(venv / "lib")], check=False, timeout=900)
    (venv / BYTECODE).touch()


def compile_code(release_dir: Path, app: str) -> None:
    """The release's own modules compiled, as the app (it owns the release until it is
    frozen): the same for the app's code, every deploy."""
    python = str(release_dir / ".venv" / "bin" / "python")
    argv = [python, "-m", "compileall", "-q", "-j0", "-x", SKIPPED, str(release_dir)]
    run(argv, user=app, check=False, timeout=600)


PYTHONS = TOOLS / "python"  # uv-managed Pythons ([server] python), shared by the apps


def managed_python(uv: str, env: dict[str, str], request: DeployRequest) -> str:
    """[server] python: that version installed by uv (once per server), its interpreter.
    uv downloads it from python-build-standalone, or [server] python_mirror."""
    version = request.python
    assert version, "only called with [server] python set"
    env = {**env, "UV_PYTHON_INSTALL_DIR": str(PYTHONS), "UV_PYTHON_DOWNLOADS": "automatic"}
    if request.python_mirror:
        env["UV_PYTHON_INSTALL_MIRROR"] = request.python_mirror
    result = run([uv, "python", "install", version], env=env, check=False, timeout=900)
    if result.returncode != 0:
        raise AgentError(
            f"installing Python {version} (uv-managed, for [server] python) failed",
            output=tail(result.stdout + "\n" + result.stderr, 20),
            hint="the server must reach python-build-standalone's downloads on GitHub, or a "
            "mirror of them set as [server] python_mirror; or leave [server] python out to "
            "use the system Python",
        )
    found = run([uv, "python", "find", "--managed-python", version], env=env, check=False)
    if found.returncode != 0 or not found.stdout.strip():
        raise AgentError(f"uv installed Python {version} but cannot find it", output=found.stderr)
    return found.stdout.strip()


TOOLCHAIN = ["build-essential", "pkg-config", "python3-dev"]
BUILD_FAILED = re.compile(r"Failed to build `([^`]+)`")
MISSING = (
    (re.compile(r"fatal error: ([\w/.+-]+\.h): No such file"), "the C header {} is missing"),
    (
        re.compile(r"Package '?([\w.+-]+?)'?,? (?:required by .*, )?(?:was )?not found"),
        "pkg-config cannot find {}",
    ),
    (re.compile(r'Dependency "([\w.+-]+)" not found'), "pkg-config cannot find {}"),  # meson
    (re.compile(r"error: command '([^']+)' failed"), "the command {} failed"),
)


def install_failure(output: str) -> AgentError:
    """Which package could not be built, and the missing piece, rather than a traceback."""
    built = BUILD_FAILED.search(output)
    if not built:
        return AgentError("installing the dependencies failed", output=tail(output, 30))
    piece = next(
        (text.format(m[1]) for pattern, text in MISSING if (m := pattern.search(output))), ""
    )
    return AgentError(
        f"building {built[1]} from source failed" + (f": {piece}" if piece else ""),
        output=tail(output, 30),
        hint="it has no wheel for this server, so it is compiled here: list the Debian "
        "package with that header or library in [build] packages (its -dev package, say "
        '"libxml2-dev"; `apt-file search NAME` finds it), or pin a version that has a wheel',
    )


def prune_venvs(paths: AppPaths) -> None:
    """Virtualenvs no kept release links to."""
    if not paths.venvs.is_dir():
        return
    used = {
        os.readlink(p / ".venv") for p in paths.releases.iterdir() if (p / ".venv").is_symlink()
    }
    for venv in paths.venvs.iterdir():
        if str(venv) not in used:
            shutil.rmtree(venv, ignore_errors=True)

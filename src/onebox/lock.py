"""Lock the project's dependencies with hashes, for the server's Python.

Whatever the project declares them with (uv.lock, Pipfile.lock, requirements*.txt,
pyproject.toml), the server receives one requirements file in which every package has
an exact version and its hashes, and installs it with --require-hashes: it gets exactly
what the developer locked, or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from uv import find_uv_bin

from onebox.errors import ConfigError

GUNICORN = "gunicorn==23.0.0"
# [app] asgi: gunicorn runs uvicorn's worker (websockets through uvicorn[standard])
ASGI_SERVER = "uvicorn-worker==0.4.0\nuvicorn[standard]>=0.30"
# The driver Django needs for each engine, added when the project lists none of the others.
DRIVERS = {
    "mysql": ("mysqlclient>=2.2,<3", {"mysqlclient", "pymysql", "mysql-connector-python"}),
    "postgresql": (
        "psycopg[binary]>=3.1.8,<4",
        {"psycopg", "psycopg-binary", "psycopg2", "psycopg2-binary"},
    ),
}
# Packages that compile on install, and the Debian packages their build needs.
BUILD_PACKAGES = {
    "mysqlclient": ["build-essential", "pkg-config", "default-libmysqlclient-dev"],
    "psycopg2": ["build-essential", "libpq-dev"],
    "psycopg-c": ["build-essential", "libpq-dev"],
    "python-ldap": ["build-essential", "libldap2-dev", "libsasl2-dev"],
}


@dataclass(frozen=True)
class Lock:
    text: str
    packages: list[str]  # Debian build packages the lock needs
    note: str = ""  # what the user should know about how it was made

    @property
    def hash(self) -> str:
        """What names the virtualenv on the server: the pins alone, never a comment (a
        comment may name the temp file the lock was made from)."""
        lines = [line.split(" #")[0].rstrip() for line in self.text.splitlines()]
        pins = "\n".join(line for line in lines if line and not line.lstrip().startswith("#"))
        return hashlib.sha256(pins.encode()).hexdigest()[:16]


CACHE = Path.home() / ".cache" / "onebox" / "locks"


def lock(
    root: Path, source: str | None, python_version: str, engine: str = "sqlite", asgi: bool = False
) -> Lock:
    """The lock for the server's Python, cached by everything it depends on."""
    tested = tested_versions(root)
    served = f"{GUNICORN}|{ASGI_SERVER if asgi else ''}"
    key = hashlib.sha256(f"{source}|{python_version}|{served}|{tested}|{engine}".encode())
    for path in _declaration_files(root, source):
        key.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    cached = CACHE / f"{key.hexdigest()[:24]}.json"
    try:  # the lock and its note (a driver added...): the same output warm or cold
        entry = json.loads(cached.read_text())
        return Lock(text=entry["text"], packages=build_packages(entry["text"]), note=entry["note"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = _lock(root, source, python_version, tested)
    result = with_driver(result, engine, python_version, root)
    if asgi:
        result = with_asgi_server(result, python_version, root)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"text": result.text, "note": result.note}))
    return result


def with_driver(locked: Lock, engine: str, python_version: str, root: Path) -> Lock:
    """A MySQL or PostgreSQL app whose dependencies name no driver gets Django's usual one."""
    if engine not in DRIVERS:
        return locked
    requirement, alternatives = DRIVERS[engine]
    if alternatives & pinned_names(locked.text):
        return locked
    text = with_requirement(locked.text, requirement, python_version, root)
    name = requirement.split(">")[0]
    note = f"added {name} ([database] engine = {engine!r}; your dependencies name no driver)"
    return Lock(
        text=text, packages=build_packages(text), note="; ".join(filter(None, [locked.note, note]))
    )


def with_asgi_server(locked: Lock, python_version: str, root: Path) -> Lock:
    """[app] asgi: uvicorn's gunicorn worker, with websockets support (uvicorn[standard]),
    unless the project pins them itself."""
    if {"uvicorn-worker"} <= pinned_names(locked.text):
        return locked
    text = with_requirement(locked.text, ASGI_SERVER, python_version, root)
    return Lock(text=text, packages=build_packages(text), note=locked.note)


def pinned_names(text: str) -> set[str]:
    return {m.lower().replace("_", "-") for m in re.findall(r"^([A-Za-z0-9_.-]+)==", text, re.M)}


def local_environment(root: Path) -> Path | None:
    """The project's own virtualenv, where the developer ran and tested the code."""
    candidates = [root / ".venv", root / "venv", root / "env"]
    active = os.environ.get("VIRTUAL_ENV")
    if active and Path(active).resolve().is_relative_to(root.resolve()):
        candidates.insert(0, Path(active))
    return next((c for c in candidates if (c / "bin" / "python").exists()), None)


def tested_versions(root: Path) -> str:
    """`name==version` lines of the project's virtualenv ("" when it has none)."""
    venv = local_environment(root)
    if venv is None:
        return ""
    result = subprocess.run(
        [find_uv_bin(), "pip", "freeze", "--python", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=False,
    )
    pins = [line for line in result.stdout.splitlines() if re.match(r"^[A-Za-z0-9_.-]+==", line)]
    return "\n".join(sorted(pins))


def _declaration_files(root: Path, source: str | None) -> list[Path]:
    """Every file the lock depends on: requirements files include others (-r, -c)."""
    if not source or not (root / source).is_file():
        return []
    found = {root / source}
    if source.endswith(".txt"):
        found.update(root.glob("requirements*.txt"))
        found.update(root.glob("requirements/**/*.txt"))
        found.update((root / source).parent.glob("*.txt"))
    if source in ("uv.lock", "pyproject.toml"):
        found.update(p for p in (root / "pyproject.toml", root / "uv.lock") if p.is_file())
    return sorted(p for p in found if p.is_file())


def _lock(root: Path, source: str | None, python_version: str, tested: str = "") -> Lock:
    if source is None:
        raise ConfigError(
            "no dependency file: onebox cannot tell what to install",
            hint="add a requirements.txt (or uv.lock/Pipfile.lock), and set "
            "[build] requirements in onebox.toml",
        )
    path = root / source
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.txt"))
        raise ConfigError(
            f"[build] requirements: {source} is a folder; it must name one file",
            hint=f'pick the file the server installs, like "{source.rstrip("/")}/'
            f'{found[-1] if found else "production.txt"}"'
            + (f" (the folder holds {', '.join(found)})" if found else ""),
        )
    if not path.is_file():
        raise ConfigError(
            f"[build] requirements: {source} does not exist in {root}",
            hint="fix the path in onebox.toml",
        )
    if path.name == "uv.lock":
        text = _uv(
            [
                "export",
                "--frozen",
                "--no-dev",
                "--no-emit-project",
                "--format",
                "requirements-txt",
                "--no-header",
            ],
            root,
        )
    elif path.name == "Pipfile.lock":
        text = from_pipfile_lock(json.loads(path.read_text()))
    elif path.name == "Pipfile":
        raise ConfigError(
            "Pipfile without Pipfile.lock", hint="run `pipenv lock` and commit Pipfile.lock"
        )
    elif _fully_hashed(path):
        text = path.read_text()
    else:
        return _lock_loose(path, root, python_version, tested)
    text = with_gunicorn(text, python_version, root)
    return Lock(text=text, packages=build_packages(text))


def _lock_loose(path: Path, root: Path, python_version: str, tested: str) -> Lock:
    """Ranges, not pins: take the versions of the project's virtualenv when it has one,
    so the server runs what the developer tested; else the newest that match."""
    note = ""
    if tested:
        try:
            text = _compile(path, root, python_version, constraints=tested)
            note = f"locked to the versions in {local_environment(root)} (what you tested)"
        except ConfigError:
            text = _compile(path, root, python_version)
            note = (
                f"your virtualenv {local_environment(root)} does not satisfy {path.name}: "
                "locked the newest matching versions instead; update it to test them"
            )
    else:
        text = _compile(path, root, python_version)
        note = (
            f"{path.name} has ranges and the project has no virtualenv: locked the newest "
            "matching versions (commit a uv.lock or hashed requirements to pin them)"
            if has_ranges(path)
            else ""
        )
    text = with_gunicorn(text, python_version, root)
    return Lock(text=text, packages=build_packages(text), note=note)


def _uv(args: list[str], root: Path) -> str:
    result = subprocess.run([find_uv_bin(), *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(
            f"locking the dependencies failed: uv {args[0]}",
            output=result.stderr[-2000:],
            hint="fix the dependency declaration named above",
        )
    return result.stdout


def _compile(path: Path, root: Path, python_version: str, constraints: str = "") -> str:
    """requirements.txt / pyproject.toml -> exact pins with hashes for the server's Python."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "requirements.txt"
        extra = []
        if constraints:
            (Path(tmp) / "constraints.txt").write_text(constraints + "\n")
            extra = ["--constraint", str(Path(tmp) / "constraints.txt")]
        _uv(
            [
                "pip",
                "compile",
                "--quiet",
                "--generate-hashes",
                "--emit-index-url",
                "--no-header",
                "--no-annotate",  # "# via /tmp/…": the same lock must read the same
                "--python-version",
                python_version,
                "--python-platform",
                "linux",
                str(path),
                *extra,
                "-o",
                str(out),
            ],
            root,
        )
        return out.read_text()


def has_ranges(path: Path, seen: frozenset[Path] = frozenset()) -> bool:
    """Whether a requirements file (and the ones it includes with -r) leaves any version
    open; a pyproject.toml always counts as ranges (its dependencies rarely pin)."""
    if path.suffix != ".txt" or path in seen:
        return path.suffix != ".txt"
    for line in _logical_lines(path.read_text()):
        if line.startswith(("-r ", "--requirement ")):
            included = path.parent / line.split(None, 1)[1].strip()
            if included.is_file() and has_ranges(included, seen | {path}):
                return True
        elif line and not line.startswith("-"):
            spec = re.split(r"\s+--", line.split(";")[0])[0].strip()  # no --hash=...
            if not re.search(r"===?\s*[\w.!+-]+\s*$", spec) or "," in spec:
                return True
    return False


def _fully_hashed(path: Path) -> bool:
    lines = [line for line in _logical_lines(path.read_text()) if line and not line.startswith("-")]
    return bool(lines) and all("--hash=" in line and "==" in line for line in lines)


def _logical_lines(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [line.split(" #")[0].strip() for line in joined.splitlines() if not line.startswith("#")]


def from_pipfile_lock(data: dict) -> str:
    lines = []
    for source in data.get("_meta", {}).get("sources", [])[:1]:
        lines.append(f"--index-url {source['url']}")
    for name, spec in sorted(data.get("default", {}).items()):
        if "version" not in spec or not spec.get("hashes"):
            raise ConfigError(
                f"Pipfile.lock: {name} has no pinned version with hashes",
                hint="run `pipenv lock` again",
            )
        marker = f"; {spec['markers']}" if spec.get("markers") else ""
        hashes = " ".join(f"--hash={h}" for h in spec["hashes"])
        lines.append(f"{name}{spec['version']}{marker} {hashes}")
    return "\n".join(lines) + "\n"


def with_gunicorn(text: str, python_version: str, root: Path) -> str:
    """The project may not list gunicorn (it only uses runserver locally): add it, hashed."""
    if re.search(r"^gunicorn==", text, re.M | re.I):
        return text
    return with_requirement(text, GUNICORN, python_version, root)


def with_requirement(text: str, requirement: str, python_version: str, root: Path) -> str:
    """Lock one more requirement (with hashes) and append what the lock does not pin yet."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.txt"
        source.write_text(requirement + "\n")
        extra = _compile(source, root, python_version)
    kept = [line for line in extra.splitlines() if not line.startswith("--index-url")]
    existing = {m.lower() for m in re.findall(r"^([A-Za-z0-9_.-]+)==", text, re.M)}
    out, skip = [], False
    for line in kept:  # drop packages (packaging...) the project already pins
        name = re.match(r"^([A-Za-z0-9_.-]+)==", line)
        if name:
            skip = name.group(1).lower() in existing
        if not skip:
            out.append(line)
    return text.rstrip("\n") + "\n" + "\n".join(out) + "\n"


def build_packages(text: str) -> list[str]:
    names = pinned_names(text)
    needed: list[str] = []
    for name, packages in BUILD_PACKAGES.items():
        if name in names:
            needed += [p for p in packages if p not in needed]
    return needed

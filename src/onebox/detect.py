"""Find out what a Django project looks like without importing or running any of it.

Some settings files crash when imported outside manage.py (they read environment
variables, open sockets, import optional packages), so detection reads source code
with `ast` only. The server, which runs the real settings, reports the real values
(STATIC_ROOT, MEDIA_ROOT) at deploy time.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from onebox.config.sections import S3_SECRETS, MediaConfig
from onebox.detect_background import propose
from onebox.errors import ProjectError
from onebox.settings_env import Switch, env_reads, literal_settings, switches

SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", ".tox", ".onebox"}
PRODUCTION_NAMES = ("production", "prod", "live", "deploy")
# Variables onebox itself provides to the app, so they need no `onebox env set`.
# django-storages' S3 backends, by their dotted names (s3 since 1.14, s3boto3 before)
S3_BACKEND = re.compile(r"storages\.backends\.s3(?:boto3)?\b")
# What [media] storage = "s3" gives the app, the keys it asks for included
MEDIA_PROVIDED = {
    *MediaConfig(storage="s3", bucket="x-media", endpoint="https://x", region="x1").env(),
    *S3_SECRETS,
}
PROVIDED_ENV = {
    "SECRET_KEY",
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "ALLOWED_HOSTS",
    "DJANGO_ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "DJANGO_SETTINGS_MODULE",
    "STATIC_ROOT",
    "MEDIA_ROOT",
    "ONEBOX_RELEASE",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
    "DATABASE_HOST",
    "DATABASE_PORT",
}
# The project's own names for what onebox provides: init writes them to [env] vars as
# references (`DB_PASSWORD = "${DATABASE_PASSWORD}"`), resolved on the server.
DATABASE_ALIASES = {
    "DATABASE_NAME": ("DB_NAME", "DB_DATABASE", "POSTGRES_DB", "MYSQL_DATABASE"),
    "DATABASE_USER": ("DB_USER", "DB_USERNAME", "DATABASE_USERNAME", "POSTGRES_USER", "MYSQL_USER"),
    "DATABASE_PASSWORD": ("DB_PASSWORD", "DB_PASS", "DATABASE_PASS", "POSTGRES_PASSWORD",
                          "MYSQL_PASSWORD"),
    "DATABASE_HOST": ("DB_HOST", "POSTGRES_HOST", "MYSQL_HOST"),
    "DATABASE_PORT": ("DB_PORT", "POSTGRES_PORT", "MYSQL_PORT"),
    "DATABASE_URL": ("DB_URL", "DB_URI", "POSTGRES_URL", "MYSQL_URL"),
}  # fmt: skip


def database_references(names: list[str], engine: str) -> dict[str, str]:
    """{project's name: "${ONEBOX_NAME}"} for the database values the settings read under
    their own names (SQLite has only a URL)."""
    references = {}
    for provided, aliases in DATABASE_ALIASES.items():
        if engine == "sqlite" and provided != "DATABASE_URL":
            continue
        for alias in aliases:
            if alias in names:
                references[alias] = "${" + provided + "}"
    return references


# What in a settings file or a dependency list tells which database the project uses.
ENGINE_MARKS = {
    "mysql": ("django.db.backends.mysql", "mysqlclient", "pymysql", "mysql-connector"),
    "postgresql": ("django.db.backends.postgresql", "postgis", "psycopg"),
}


SWITCHED = ("DEBUG", "SECRET_KEY")  # settings whose env switch an error should name


def unsafe_settings(files: list[Path], root: Path, found: dict[str, Switch]) -> list[str]:
    """DEBUG on or a SECRET_KEY in the source: Django's deployment check refuses them."""
    notes = []
    literal = literal_settings(files, root, SWITCHED)
    if literal.get("DEBUG", (False,))[0] is True:
        notes.append(
            f"DEBUG = True ({literal['DEBUG'][1]}): Django's deployment check refuses it "
            "and so does onebox; make production's settings say DEBUG = False"
        )
    if isinstance(literal.get("SECRET_KEY", (None,))[0], str) and "SECRET_KEY" not in found:
        notes.append(
            f"SECRET_KEY is written in {literal['SECRET_KEY'][1]}: read it from the "
            'environment in production, SECRET_KEY = os.environ["SECRET_KEY"] (onebox keeps '
            "a strong one in the server's secrets file)"
        )
    return notes


@dataclass
class Detected:
    root: Path
    manage: str
    name: str
    settings: str
    wsgi: str
    requirements: str | None
    python: str | None = None
    static_root: str | None = None
    media_root: str | None = None
    required_env: list[str] = field(default_factory=list)
    optional_env: list[str] = field(default_factory=list)
    env_references: dict[str, str] = field(default_factory=dict)
    switches: dict[str, Switch] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    release_commands: list[str] = field(default_factory=list)
    engine: str = "sqlite"
    # proposed [processes] and [services] redis (see detect_background.py), and why
    asgi: str | None = None  # ASGI_APPLICATION (Django Channels), as module:attribute
    processes: dict[str, str] = field(default_factory=dict)
    redis: dict[str, str] | None = None
    background_reasons: list[str] = field(default_factory=list)
    media_storage: str = "local"  # "s3": the settings store uploads with django-storages


def detect(root: Path, settings: str | None = None) -> Detected:
    """What onebox.toml needs, read from the project; `settings` when the user says."""
    root = root.resolve()
    if not root.is_dir():
        raise ProjectError(f"{root} is not a directory", hint="give the path of a Django project")
    manage = find_manage(root)
    project_dir = manage.parent
    settings = settings or settings_module(manage)
    settings_files = module_files(project_dir, settings)
    assignments = read_assignments(settings_files)
    wsgi = wsgi_application(project_dir, settings, assignments)
    detected = Detected(
        root=root,
        manage=str(manage.relative_to(root)),
        name=app_name(root),
        settings=settings,
        wsgi=wsgi,
        requirements=find_requirements(root),
        python=python_requirement(root),
        static_root=assignments.get("STATIC_ROOT"),
        media_root=assignments.get("MEDIA_ROOT"),
        engine=database_engine(root, find_requirements(root), settings_files),
    )
    reads = env_reads(settings_files)
    refs = database_references(reads.required + reads.optional, detected.engine)
    detected.env_references = refs
    settings_text = "\n".join(p.read_text(errors="replace") for p in settings_files)
    background = propose(
        root, project_dir, settings_text, list(_walk_python(project_dir, 3)), detected.name
    )
    detected.processes, detected.redis = background.processes, background.redis
    asgi = assignments.get("ASGI_APPLICATION", "").strip("\"'")
    if re.fullmatch(r"[A-Za-z_][\w.]*\.\w+", asgi):
        detected.asgi = ":".join(asgi.rsplit(".", 1))
        background.reasons.append(
            f"asgi: ASGI_APPLICATION = {asgi} (websockets and async views, served by "
            "uvicorn's worker)"
        )
    detected.background_reasons = background.reasons
    provided = PROVIDED_ENV | set(refs) | background.provided_env
    if S3_BACKEND.search(settings_text):
        detected.media_storage = "s3"
        provided |= MEDIA_PROVIDED  # ([media] gives them, and asks for the keys itself)
        detected.notes.append(
            "media: the settings store files with django-storages' S3 backend, so "
            '[media] storage = "s3" is proposed: set its bucket (and endpoint, for a '
            "provider other than AWS), then `onebox env set AWS_ACCESS_KEY_ID=- "
            "AWS_SECRET_ACCESS_KEY=-`"
        )
    detected.required_env = [n for n in reads.required if n not in provided]
    detected.optional_env = [n for n in reads.optional if n not in provided]
    if refs:
        detected.notes.append(
            "the settings read the database as "
            + ", ".join(refs)
            + ": [env] vars refers them to what onebox provides (resolved on the server)"
        )
    detected.switches = switches(settings_files, root, SWITCHED)
    detected.notes += unsafe_settings(settings_files, root, detected.switches)
    detected.release_commands, build_notes = build_steps(root, detected, assignments)
    detected.notes += build_notes
    if detected.requirements is None:
        detected.notes.append(
            "no dependency file found (uv.lock, requirements.txt, Pipfile.lock, pyproject.toml)"
        )
    return detected


def build_steps(
    root: Path, d: Detected, assignments: dict[str, str]
) -> tuple[list[str], list[str]]:
    """What the project's dependencies imply besides collectstatic: (release commands,
    notes). django-compressor with offline compression needs `compress` once collected;
    a package.json build makes files that must be built before the deploy and shipped."""
    commands, notes = [], []
    apps = assignments.get("INSTALLED_APPS", "")
    if "compressor" in apps and assignments.get("COMPRESS_OFFLINE", "False") != "False":
        commands.append(f"python {d.manage} compress --force")
        notes.append(
            "django-compressor with COMPRESS_OFFLINE: `compress` runs in [deploy] release, "
            "after collectstatic, before the release gets traffic"
        )
    package = root / "package.json"
    if package.is_file() and '"build"' in package.read_text(errors="replace"):
        notes.append(
            "package.json has a build script: onebox does not run npm on the server. Build "
            "before `onebox deploy`, and if git ignores the output, ship it with "
            '[build] include = ["path/to/output/**"]'
        )
    return commands, notes


def find_manage(root: Path, depth: int = 3) -> Path:
    found = sorted(_walk(root, "manage.py", depth))
    if not found:
        raise ProjectError(
            f"{root} is not a Django project: no manage.py found",
            hint="run onebox in the folder that holds manage.py, or pass its path",
        )
    if len(found) > 1:
        listing = ", ".join(str(p.relative_to(root)) for p in found)
        raise ProjectError(
            f"several Django projects under {root}: {listing}",
            hint="pass the folder of the one to deploy: onebox init PATH",
        )
    return found[0]


def _walk(folder: Path, filename: str, depth: int):
    if (folder / filename).is_file():
        yield folder / filename
    if depth == 0:
        return
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name not in SKIP_DIRS and not child.name.startswith("."):
            yield from _walk(child, filename, depth - 1)


def settings_module(manage: Path) -> str:
    """DJANGO_SETTINGS_MODULE as manage.py (or else wsgi.py / asgi.py) sets it, moved to a
    production module if one exists; else the one production module among the project's
    settings modules."""
    for source in (manage, *sorted(manage.parent.glob("*/[wa]sgi.py"))):
        value = _settings_default(source)
        if value is not None:
            return production_variant(manage.parent, value)
    candidates = settings_candidates(manage.parent)
    production = [c for c in candidates if c.rpartition(".")[2] in PRODUCTION_NAMES]
    if len(candidates) == 1 or len(production) == 1:
        return (production or candidates)[0]
    listing = ", ".join(candidates) or "none found"
    raise ProjectError(
        f"{manage.name} does not set DJANGO_SETTINGS_MODULE, and the settings module to "
        f"deploy is not clear (candidates: {listing})",
        hint="say which: onebox init --settings MODULE",
    )


def _settings_default(path: Path) -> str | None:
    """The value of os.environ.setdefault("DJANGO_SETTINGS_MODULE", "...") in a file."""
    value = None
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Call) and len(node.args) == 2:
            key, default = node.args
            if _const(key) == "DJANGO_SETTINGS_MODULE" and isinstance(_const(default), str):
                value = str(_const(default))
    return value


def settings_candidates(project_dir: Path, depth: int = 3) -> list[str]:
    """Modules that look like Django settings: settings.py files, and the modules of
    settings packages, found by what they assign (INSTALLED_APPS or a star import)."""
    found = []
    for path in sorted(_walk_python(project_dir, depth)):
        in_package = path.parent.name == "settings" and (path.parent / "__init__.py").is_file()
        if path.name != "settings.py" and not in_package:
            continue
        if path.name == "__init__.py":
            continue
        text = path.read_text(errors="replace")
        if "INSTALLED_APPS" in text or re.search(r"^from \S+ import \*", text, re.M):
            found.append(".".join(path.relative_to(project_dir).with_suffix("").parts))
    return found


def _walk_python(folder: Path, depth: int):
    for child in sorted(folder.iterdir()):
        if child.is_file() and child.suffix == ".py":
            yield child
        elif child.is_dir() and depth > 0 and _searchable(child):
            yield from _walk_python(child, depth - 1)


def _searchable(folder: Path) -> bool:
    return folder.name not in SKIP_DIRS and not folder.name.startswith(".")


def production_variant(project_dir: Path, module: str) -> str:
    """`config.settings.local` -> `config.settings.production` when that module exists."""
    package, _, leaf = module.rpartition(".")
    package_dir = project_dir / package.replace(".", "/")
    if package and (package_dir / "__init__.py").is_file() and leaf not in PRODUCTION_NAMES:
        for name in PRODUCTION_NAMES:
            if (package_dir / f"{name}.py").is_file():
                return f"{package}.{name}"
    return module


def module_files(project_dir: Path, module: str) -> list[Path]:
    """The settings module's file and the sibling modules it star-imports (base.py...)."""
    path = project_dir / module.replace(".", "/")
    candidates = [path.with_suffix(".py"), path / "__init__.py"]
    main = next((c for c in candidates if c.is_file()), None)
    if main is None:
        raise ProjectError(
            f"settings module {module!r} not found under {project_dir}",
            hint="set [app] settings in onebox.toml to your settings module",
        )
    files = [main]
    for node in ast.walk(_parse(main)):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            sibling = main.parent / f"{node.module.replace('.', '/')}.py"
            if sibling.is_file() and sibling not in files:
                files.insert(0, sibling)
    return files


def read_assignments(files: list[Path]) -> dict[str, str]:
    """Top-level UPPERCASE assignments, as source text, later files winning."""
    values: dict[str, str] = {}
    for path in files:
        for node in _parse(path).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id.isupper():
                    values[target.id] = ast.unparse(node.value)
    return values


def wsgi_application(project_dir: Path, settings: str, assignments: dict[str, str]) -> str:
    declared = assignments.get("WSGI_APPLICATION", "").strip("'\"")
    if declared and "." in declared:
        module, _, attr = declared.rpartition(".")
        return f"{module}:{attr}"
    for folder in (settings.split(".")[0], *(p.parent.name for p in project_dir.glob("*/wsgi.py"))):
        if (project_dir / folder / "wsgi.py").is_file():
            return f"{folder}.wsgi:application"
    raise ProjectError(
        "cannot find the WSGI application (no WSGI_APPLICATION setting, no wsgi.py)",
        hint='set [app] wsgi = "package.wsgi:application" in onebox.toml',
    )


REQUIREMENTS_FILES = (
    "requirements/production.txt",
    "requirements/prod.txt",
    "requirements.txt",
    "requirements/base.txt",
    "requirements-prod.txt",
)


def find_requirements(root: Path) -> str | None:
    """Locks first; a Pipfile without its lock only after a requirements file (a pinned
    one is what the project deploys with; an unlocked Pipfile cannot be installed)."""
    for name in ("uv.lock", "Pipfile.lock"):
        if (root / name).is_file():
            return name
    for pattern in REQUIREMENTS_FILES:
        if (root / pattern).is_file():
            return pattern
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and "dependencies" in pyproject.read_text(errors="replace"):
        return "pyproject.toml"
    return "Pipfile" if (root / "Pipfile").is_file() else None


def database_engine(root: Path, requirements: str | None, settings: list[Path]) -> str:
    """mysql or postgresql when the settings or the dependencies name one; else sqlite."""
    texts = [path.read_text(errors="replace") for path in settings if path.is_file()]
    if requirements and (root / requirements).is_file():
        texts.append((root / requirements).read_text(errors="replace").lower())
    for text in texts:
        for engine, marks in ENGINE_MARKS.items():
            if any(mark in text for mark in marks):
                return engine
    return "sqlite"


def python_requirement(root: Path) -> str | None:
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        match = re.search(r'^requires-python\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
        if match:
            return match.group(1)
    version_file = root / ".python-version"
    if version_file.is_file():
        version = version_file.read_text().strip()
        if re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
            return f">={version}"
    return None


def app_name(root: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"app-{name}".strip("-")
    return name[:31]


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise ProjectError(
            f"{path}:{exc.lineno}: Python syntax error: {exc.msg}",
            hint="fix the file; onebox reads it without running it",
        ) from None


def _const(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def settings_switches(root: Path, manage: str, settings: str) -> dict[str, dict[str, str]]:
    """For a deploy: where DEBUG and SECRET_KEY take their values from, so that a refusal
    names the project's own switch (nothing when the settings cannot be read)."""
    try:
        files = module_files((root / manage).parent, settings)
        return {name: s.as_dict() for name, s in switches(files, root, SWITCHED).items()}
    except (ProjectError, OSError, SyntaxError, ValueError):
        return {}

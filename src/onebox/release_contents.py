"""Is what the settings need in the release? Checked before anything is built.

Projects often document a settings module as "create this file" and git-ignore it
(`settings/production.py`, `local_settings.py`); onebox takes files from git, so such a
file would be dropped and the deploy would fail far away, as a missing package. Here it
is named, with why it was left out and the two ways to ship it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from onebox.bundle import Bundle, why_left_out
from onebox.errors import ConfigError


def module_file(project_dir: Path, module: str) -> Path | None:
    """The file of a dotted module under the project folder, if it is the project's."""
    base = project_dir / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def settings_closure(project_dir: Path, settings: str, limit: int = 200) -> list[Path]:
    """The settings module's file, its packages' __init__.py, and every module of the
    project it imports (transitively): what must be in the release for it to load."""
    needed: list[Path] = []
    queue = [settings]
    while queue and len(needed) < limit:
        module = queue.pop(0)
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            path = module_file(project_dir, ".".join(parts[:depth]))
            if path is None or path in needed:
                continue
            needed.append(path)
            queue += _imports(path, ".".join(parts[:depth]), project_dir)
    return needed


def _imports(path: Path, module: str, project_dir: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(errors="replace"), filename=str(path))
    except SyntaxError:
        return []  # Django will say so, with the line
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    optional = _guarded_imports(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in optional:
            continue  # `try: from .local_settings import *  except ImportError: pass`
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*filter(None, anchor), *([base] if base else [])])
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return [name for name in found if name and module_file(project_dir, name) is not None]


OPTIONAL_IMPORT = ("ImportError", "ModuleNotFoundError", "Exception")


def _guarded_imports(tree: ast.Module) -> set[int]:
    """Imports inside a `try` whose handler catches their failure: optional modules."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = [ast.unparse(h.type) if h.type else "" for h in node.handlers]
        if any(not c or any(name in c for name in OPTIONAL_IMPORT) for c in caught):
            for statement in node.body:
                guarded |= {id(inner) for inner in ast.walk(statement)}
    return guarded


def check_settings_shipped(root: Path, manage: str, settings: str, bundle: Bundle) -> None:
    project_dir = (root / manage).parent
    shipped = set(bundle.files)
    for path in settings_closure(project_dir, settings):
        relative = path.relative_to(root)
        if relative in shipped:
            continue
        raise ConfigError(
            f"{relative.as_posix()}, which the settings module {settings} needs, would not "
            f"be in the release: {why_left_out(bundle, relative)}",
            hint=f"commit it (git add -f {relative.as_posix()}), or ship it as it is "
            f'with [build] include = ["{relative.as_posix()}"] in onebox.toml',
        )


MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def explain_missing_module(root: Path, manage: str, bundle: Bundle, output: str) -> str | None:
    """For a release that failed on a ModuleNotFoundError: when the module is a file of
    the working tree that the release left out, say so (it is no missing package)."""
    match = MISSING_MODULE.search(output or "")
    if not match:
        return None
    path = module_file((root / manage).parent, match.group(1)) or module_file(root, match.group(1))
    if path is None or path.relative_to(root) in set(bundle.files):
        return None
    relative = path.relative_to(root).as_posix()
    return (
        f"the module {match.group(1)!r} is {relative} in your working tree, but not in the "
        f"release: {why_left_out(bundle, Path(relative))}. Commit it, or list it in "
        f'[build] include = ["{relative}"]'
    )

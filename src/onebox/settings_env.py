"""Which environment variables a settings module reads, and whether it must have them.

Read from the source with `ast` (settings may crash on import). A read is *required*
when it has no default and no guard: `os.environ["X"]`, django-environ's `env("X")` or
`env.str("X")` / `env.bool("X")`..., python-decouple's `config("X")`. A read with a
default or under a guard is *optional*: `os.environ.get("X")`, `os.getenv("X", ...)`,
`env("X", default=...)`, `config("X", default=...)`, a read inside
`if "X" in os.environ:`, or a variable given a default in `environ.Env(X=(bool, False))`.
Optional ones never block a deploy: setting dummy values could switch features on.

It also finds where a setting (DEBUG, SECRET_KEY) takes its value from a variable, so an
error about it can name the project's own switch.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ENVIRON = ("os.environ", "environ")
GETTERS = ("os.environ.get", "environ.get", "os.getenv", "getenv", "os.environ.setdefault")
DJANGO_ENVIRON_CASTS = (
    "str", "bool", "int", "float", "json", "list", "tuple", "dict", "url", "db", "db_url",
    "cache", "cache_url", "email", "email_url", "search_url", "path", "bytes", "parse_value",
)  # fmt: skip
DECOUPLE = ("config", "decouple.config")


@dataclass
class EnvReads:
    required: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)

    def add(self, name: str, required: bool) -> None:
        if required:
            if name in self.optional:
                self.optional.remove(name)
            if name not in self.required:
                self.required.append(name)
        elif name not in self.required and name not in self.optional:
            self.optional.append(name)


def env_reads(files: list[Path]) -> EnvReads:
    reads = EnvReads()
    for path in files:
        tree = ast.parse(path.read_text(errors="replace"), filename=str(path))
        instances = _environ_instances(tree)
        defaults = _scheme_defaults(tree)
        guarded = _guarded_nodes(tree, instances)
        for node in ast.walk(tree):
            found = read_of(node, instances)
            if found is None:
                continue
            name, required = found
            reads.add(name, required and name not in defaults and id(node) not in guarded)
    return reads


def read_of(node: ast.AST, instances: set[str]) -> tuple[str, bool] | None:
    """(variable, required) when the node reads an environment variable."""
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ENVIRON:
        name = _const(node.slice)
        if isinstance(name, str) and isinstance(node.ctx, ast.Load):
            return name, True
        return None
    if not isinstance(node, ast.Call) or not node.args:
        return None
    name = _const(node.args[0])
    if not isinstance(name, str):
        return None
    callee = ast.unparse(node.func)
    has_default = any(k.arg == "default" for k in node.keywords)
    if callee in GETTERS:
        return name, False
    if callee in DECOUPLE:
        return name, not (has_default or len(node.args) > 1)
    owner, _, method = callee.rpartition(".")
    if callee in instances:  # env("X", cast, default)
        return name, not (has_default or len(node.args) > 2)
    if owner in instances and method in DJANGO_ENVIRON_CASTS:  # env.bool("X", default)
        return name, not (has_default or len(node.args) > 1)
    return None


def _environ_instances(tree: ast.Module) -> set[str]:
    """Names bound to `environ.Env(...)` (django-environ); `env` is the documented one."""
    names = {"env"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
            continue
        if ast.unparse(node.value.func) in ("environ.Env", "Env"):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _scheme_defaults(tree: ast.Module) -> set[str]:
    """Variables with a default in the scheme: `environ.Env(DEBUG=(bool, False))`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("environ.Env", "Env"):
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg and isinstance(value, ast.Tuple) and len(value.elts) == 2:
                    names.add(keyword.arg)
    return names


def _guarded_nodes(tree: ast.Module, instances: set[str]) -> set[int]:
    """Reads inside `if "X" in os.environ:` (or `if os.environ.get("X"):`) for that X,
    and reads in a `try:` whose handler catches the KeyError."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_key_error(h) for h in node.handlers):
            for statement in node.body:
                guarded |= {id(inner) for inner in ast.walk(statement)}
            continue
        if not isinstance(node, ast.If | ast.IfExp):
            continue
        names = _tested_names(node.test, instances)
        body: list[ast.AST] = [*node.body] if isinstance(node.body, list) else [node.body]
        for branch in body:
            for inner in ast.walk(branch):
                found = read_of(inner, instances)
                if found and found[0] in names:
                    guarded.add(id(inner))
    return guarded


def _catches_key_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    caught = ast.unparse(handler.type)
    return any(name in caught for name in ("KeyError", "Exception", "ImproperlyConfigured"))


def _tested_names(test: ast.expr, instances: set[str]) -> set[str]:
    names = set()
    for node in ast.walk(test):
        if (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In)
            and ast.unparse(node.comparators[0]) in ENVIRON
            and isinstance(_const(node.left), str)
        ):
            names.add(str(_const(node.left)))
        found = read_of(node, instances)
        if found and not found[1]:  # `if os.environ.get("X"):`
            names.add(found[0])
    return names


@dataclass(frozen=True)
class Switch:
    """Where a setting takes its value from an environment variable."""

    var: str
    where: str  # file:line
    source: str  # the assignment, as written

    def as_dict(self) -> dict[str, str]:
        return {"var": self.var, "where": self.where, "source": self.source}


def switches(files: list[Path], root: Path, settings: tuple[str, ...]) -> dict[str, Switch]:
    """The last top-level assignment of each setting that reads a variable (later files,
    which star-import the earlier ones, win)."""
    found: dict[str, Switch] = {}
    for path in files:
        text = path.read_text(errors="replace")
        tree = ast.parse(text, filename=str(path))
        instances = _environ_instances(tree)
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target = node.targets[0]
            if not (isinstance(target, ast.Name) and target.id in settings):
                continue
            found.pop(target.id, None)  # reassigned: an earlier switch no longer counts
            for inner in ast.walk(node.value):
                read = read_of(inner, instances)
                if read is not None:
                    where = f"{_relative(path, root)}:{node.lineno}"
                    source = ast.get_source_segment(text, node) or ast.unparse(node)
                    found[target.id] = Switch(read[0], where, " ".join(source.split()))
                    break
    return found


def literal_settings(files: list[Path], root: Path, names: tuple[str, ...]) -> dict:
    """Settings assigned a plain constant at top level: {name: (value, "file:line")}."""
    found: dict[str, tuple[object, str]] = {}
    for path in files:
        for node in ast.parse(path.read_text(errors="replace"), filename=str(path)).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in names:
                    if isinstance(node.value, ast.Constant):
                        where = f"{_relative(path, root)}:{node.lineno}"
                        found[target.id] = (node.value.value, where)
                    else:
                        found.pop(target.id, None)
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _const(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None

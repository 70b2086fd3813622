"""One source for the server's layout: agent/paths.py. A path of it spelled anywhere
else (a module, a template) would drift from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from onebox.agent import entry_script, paths

SRC = Path(__file__).parents[2] / "src" / "onebox"
LAYOUT = re.compile(
    r"/srv/|/etc/onebox|/opt/onebox|/var/(lib|log|cache)/onebox|/run/onebox|"
    r"/usr/local/sbin/onebox|/etc/systemd/system|/etc/caddy|/etc/tmpfiles\.d"
)
# agent/paths.py is the source; entry_script.py is copied on its own, so it spells its
# two paths (checked against paths.py below); sandbox.py builds the practice servers'
# own root filesystem on this machine, not onebox's layout.
EXEMPT = {"agent/paths.py", "agent/entry_script.py", "sandbox.py"}


def docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def test_no_module_spells_a_path_of_the_server_layout():
    spelled = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in EXEMPT:
            continue
        tree = ast.parse(path.read_text())
        skip = docstrings(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and id(node) not in skip and LAYOUT.search(text):
                spelled.append(f"{name}:{node.lineno}: {text[:60]!r}")
    assert spelled == []


def test_no_template_spells_a_path_of_the_server_layout():
    spelled = []
    for path in sorted((SRC / "templates").glob("*.j2")):
        if path.name == "onebox.toml.j2":  # the user's config: its comments explain the layout
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.lstrip().startswith(("#", "{#")) and LAYOUT.search(line):
                spelled.append(f"{path.name}:{number}: {line.strip()[:70]}")
    assert spelled == []


def test_the_standalone_entry_agrees_with_the_layout():
    assert Path(entry_script.INSTALLED_AGENT) == paths.AGENT_HOME
    assert Path(entry_script.HISTORY) == paths.LOGS
    assert Path(entry_script.AGENT_CACHE) == paths.AGENT_CACHE

"""Jinja2 rendering of the files onebox writes (units, Caddyfile, onebox.toml).

A project can override any template by putting a file of the same name in
`.onebox/templates/` at its root: generated files are the user's to read and change.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

BUILTIN = Path(__file__).parent / "templates"


def environment(project_root: Path | None = None) -> jinja2.Environment:
    search = [str(BUILTIN)]
    if project_root is not None and (project_root / ".onebox" / "templates").is_dir():
        search.insert(0, str(project_root / ".onebox" / "templates"))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, project_root: Path | None = None, /, **context: object) -> str:
    return environment(project_root).get_template(template).render(**context)

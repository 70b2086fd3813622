"""Jinja2 rendering of the files onebox writes (units, Caddyfile, onebox.toml).

A project can override any template by putting a file of the same name in
`.onebox/templates/` at its root: generated files are the user's to read and change.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import tomlkit

if TYPE_CHECKING:
    import jinja2

BUILTIN = Path(__file__).parent / "templates"


def environment(project_root: Path | None = None) -> jinja2.Environment:
    import jinja2  # (here: most commands render nothing, and it costs each 30 ms)

    search = [str(BUILTIN)]
    if project_root is not None and (project_root / ".onebox" / "templates").is_dir():
        search.insert(0, str(project_root / ".onebox" / "templates"))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # onebox.toml's values come from the user's project and command line: quoted as
    # TOML, a quote or a backslash in them cannot break the file
    env.filters["toml"] = lambda value: tomlkit.item(value).as_string()
    env.filters["toml_key"] = lambda name: tomlkit.key(name).as_string()
    return env


def render(template: str, project_root: Path | None = None, /, **context: object) -> str:
    return environment(project_root).get_template(template).render(**context)

"""`onebox init`: detect the project and write a commented onebox.toml."""

from __future__ import annotations

from pathlib import Path

from onebox.config import CONFIG_FILE, load_config
from onebox.detect import Detected, detect
from onebox.errors import ConfigError
from onebox.templating import render


def init_project(
    root: Path, *, host: str = "", domain: str = "", force: bool = False
) -> tuple[Path, Detected]:
    detected = detect(root)
    target = detected.root / CONFIG_FILE
    if target.exists() and not force:
        raise ConfigError(
            f"{target} already exists",
            hint="edit it, or run `onebox init --force` to write it anew",
        )
    text = render("onebox.toml.j2", d=detected, host=host, domain=domain)
    tmp = target.with_suffix(".toml.tmp")
    tmp.write_text(text)
    load_config(tmp)  # what init writes must load: catch template drift here, not on deploy
    tmp.replace(target)
    return target, detected

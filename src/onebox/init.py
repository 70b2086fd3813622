"""`onebox init`: detect the project and write a commented onebox.toml.

An existing onebox.toml is read and kept: init only fills in the keys it lacks that
detection can answer (`--force` writes it anew from the template)."""

from __future__ import annotations

from pathlib import Path

import tomlkit
from pydantic import ValidationError
from tomlkit.exceptions import TOMLKitError

from onebox.config import CONFIG_FILE, ServerConfig, load_config
from onebox.detect import Detected, detect
from onebox.errors import ConfigError
from onebox.templating import render


def init_project(
    root: Path,
    *,
    host: str = "",
    domain: str = "",
    force: bool = False,
    settings: str | None = None,
) -> tuple[Path, Detected, list[str] | None]:
    """(onebox.toml, what was detected, the keys filled into an existing file, or None
    when the file was written anew)."""
    check_options(host=host, domain=domain)
    detected = detect(root, settings)
    target = detected.root / CONFIG_FILE
    if target.exists() and not force:
        text, filled = fill_in(target, detected, host, domain)
    else:
        text, filled = render("onebox.toml.j2", d=detected, host=host, domain=domain), None
    if filled == []:
        return target, detected, filled  # kept as it was
    write_checked(target, text)
    return target, detected, filled


def write_checked(target: Path, text: str) -> None:
    """onebox.toml written only if it loads: a generator's drift is caught here, not on
    the deploy that reads it."""
    tmp = target.with_name(f".{target.name}.onebox-tmp")
    try:
        tmp.write_text(text)
        load_config(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def check_options(**values: str) -> None:
    """--host and --domain as [server] will read them, before anything is written."""
    for option, value in values.items():
        try:
            ServerConfig.model_validate({option: value})
        except ValidationError as exc:
            why = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ConfigError(
                f"--{option} {value!r} {why}",
                hint=f"run `onebox init` again with another --{option}",
            ) from None


def wanted_keys(d: Detected, host: str, domain: str) -> dict[tuple[str, str], object]:
    keys: dict[tuple[str, str], object] = {
        ("app", "name"): d.name,
        ("app", "settings"): d.settings,
        ("app", "wsgi"): d.wsgi,
        ("app", "manage"): d.manage,
        ("database", "engine"): d.engine,
        ("env", "secrets"): d.required_env,
    }
    if d.requirements:
        keys[("build", "requirements")] = d.requirements
    if host:
        keys[("server", "host")] = host
    if domain:
        keys[("server", "domain")] = domain
    return keys


def fill_in(target: Path, d: Detected, host: str, domain: str) -> tuple[str, list[str]]:
    """The existing file with the detectable keys it lacks (or leaves empty) added,
    comments and order kept; and which keys those were."""
    try:
        document = tomlkit.parse(target.read_text(encoding="utf-8-sig"))
    except (TOMLKitError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{target} exists but cannot be read: {exc}",
            hint="fix it, or write it anew with `onebox init --force`",
        ) from None
    filled = []
    for (section, key), value in wanted_keys(d, host, domain).items():
        table = document.get(section)
        if table is None:
            table = tomlkit.table()
            document[section] = table
        if key not in table or table[key] in ("", None):
            table[key] = value
            filled.append(f"{section}.{key}")
    return tomlkit.dumps(document), filled

"""Does the project's Python fit the server's? Checked before anything is built.

Two sources say what a project needs: its own `requires-python` (or [app] python), and
the Django version it locks, which supports a range of Pythons only (Django 4.0 does not
run on 3.13, Django 6.0 not on 3.11). Debian 12 ships Python 3.11, Debian 13 3.13;
`[server] python = "3.x"` has the server use a uv-managed Python of that version instead.
"""

from __future__ import annotations

import re

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from onebox.errors import ConfigError, UnsupportedError

# Django feature release -> (oldest, newest) Python it supports, from Django's FAQ
# ("What Python version can I use with Django?"). Releases not listed are not checked.
DJANGO_PYTHONS = {
    "2.2": ("3.5", "3.9"),
    "3.0": ("3.6", "3.9"),
    "3.1": ("3.6", "3.9"),
    "3.2": ("3.6", "3.10"),
    "4.0": ("3.8", "3.10"),
    "4.1": ("3.8", "3.11"),
    "4.2": ("3.8", "3.12"),
    "5.0": ("3.10", "3.12"),
    "5.1": ("3.10", "3.13"),
    "5.2": ("3.10", "3.14"),
    "6.0": ("3.12", "3.14"),
}

WAYS_OUT = (
    '[server] python = "{fit}" in onebox.toml (a uv-managed Python on the server), or a '
    "Debian release whose Python fits (Debian 12: 3.11, Debian 13: 3.13)"
)


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def check_requires_python(wanted: str | None, python: str, where: str) -> None:
    if not wanted:
        return
    try:
        spec = SpecifierSet(wanted)
    except InvalidSpecifier:
        raise ConfigError(
            f"{where} = {wanted!r} is not a version specifier", hint='write it like ">=3.11"'
        ) from None
    if python not in spec:
        fit = next((v for v in ("3.11", "3.12", "3.13", "3.14") if spec.contains(f"{v}.0")), "")
        raise UnsupportedError(
            f"the project needs Python {wanted} ({where}); the server's Python is {python}",
            hint=WAYS_OUT.format(fit=fit or "3.x") + f", or relax {where}",
        )


def locked_django(lock_text: str) -> str | None:
    match = re.search(r"^django==([0-9][^\s;\\]*)", lock_text, re.I | re.M)
    return match.group(1) if match else None


def check_django_python(lock_text: str, python: str) -> None:
    """Refuse a locked Django that does not run on the server's Python."""
    version = locked_django(lock_text)
    if version is None or minor(version) not in DJANGO_PYTHONS:
        return
    oldest, newest = DJANGO_PYTHONS[minor(version)]
    if Version(oldest) <= Version(minor(python)) <= Version(newest):
        return
    raise UnsupportedError(
        f"Django {version} supports Python {oldest} to {newest}; the server's Python is "
        f"{python}: nothing was built",
        hint=WAYS_OUT.format(fit=newest) + ", or a Django release that supports "
        f"Python {minor(python)}",
    )

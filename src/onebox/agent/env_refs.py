"""`[env] vars` values that refer to values onebox provides: `DB_PASSWORD = "${DATABASE_PASSWORD}"`.

Projects read the database under their own names (DB_HOST, DB_NAME, DB_PASSWORD...).
A reference is resolved here, on the server, from the secrets file and the release's
other settings, so the secret never leaves the server. A value with a reference may hold
a secret: it goes to the release's REFS_FILE (0600, root; systemd reads it), never to
release.env, which the app's group (Caddy among it) can read.
"""

from __future__ import annotations

import re
from pathlib import Path

from .protocol import AgentError, ExitCode
from .system import format_env_file, write_file

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
REFS_FILE = ".onebox/env-refs.env"


def split(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain values, values with references)."""
    plain = {k: v for k, v in values.items() if not REFERENCE.search(v)}
    return plain, {k: v for k, v in values.items() if k not in plain}


def resolve(references: dict[str, str], available: dict[str, str]) -> dict[str, str]:
    resolved = {}
    for name, value in references.items():
        for wanted in REFERENCE.findall(value):
            if wanted not in available:
                raise AgentError(
                    f"[env] vars {name} refers to ${{{wanted}}}, which this server does not have",
                    hint="refer to a value onebox provides (DATABASE_URL, DATABASE_NAME, "
                    "DATABASE_USER, DATABASE_PASSWORD, DATABASE_HOST, DATABASE_PORT, SECRET_KEY)"
                    f", or set it first: `onebox env set {wanted}=...`",
                    code=ExitCode.CONFIG,
                )
        resolved[name] = REFERENCE.sub(lambda match: available[match[1]], value)
    return resolved


def write(release_dir: Path, resolved: dict[str, str]) -> None:
    """After the freeze (which makes the release group-readable): root's alone."""
    header = "[env] vars with references, resolved on this server. Mode 0600, owner root."
    write_file(release_dir / REFS_FILE, format_env_file(resolved, header), mode=0o600)

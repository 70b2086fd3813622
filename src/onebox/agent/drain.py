"""Draining the proxy in front before it reloads or hands over.

While /var/lib/onebox/drain/<app> exists, the proxy closes each connection after its
answer (Apache's include: `nokeepalive`; Caddy's site: `Connection: close`), checked per
request. A kept-alive client then reconnects at its next request, instead of sending it
on an idle connection just as a reload closes that: the one request a reload can lose.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from .paths import DRAINS, AppPaths
from .system import ensure_dir, write_file


def drain(paths: AppPaths) -> None:
    ensure_dir(DRAINS)
    write_file(paths.drain, "")


def undrain(paths: AppPaths) -> str:
    paths.drain.unlink(missing_ok=True)
    return ""


@contextmanager
def drained(paths: AppPaths, settle: float = 1.0) -> Iterator[None]:
    """Drained for the block, after `settle` seconds in which each kept-alive client's
    next answer closes its connection."""
    drain(paths)
    try:
        time.sleep(settle)
        yield
    finally:
        undrain(paths)

"""`onebox logs --access`: the app's access log, as Caddy writes it, one line per request.

Caddy writes JSON (see site.caddy.j2) and rolls the file itself (renames it, starts a
new one): this prints the last lines readably, or as they are (`json`), and with
`follow` keeps printing new ones across a roll, as `tail -F` would.

    python3 -m onebox_agent.access_log FILE LINES [follow] [json]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

POLL_SECONDS = 0.5


def format_entry(line: str) -> str:
    """`2026-12-02 13:48:20 203.0.113.5 GET /path HTTP/2.0 200 15592 B 8.7 ms`: the
    fields a reader looks for first; a line that is not Caddy's JSON, as it is."""
    try:
        entry = json.loads(line)
        request = entry["request"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(entry["ts"])))
    except (ValueError, KeyError, TypeError):
        return line.rstrip("\n")
    if not isinstance(request, dict):
        return line.rstrip("\n")
    client = request.get("client_ip") or request.get("remote_ip", "-")  # (2.7+: client_ip)
    uri = request.get("uri", "-")
    milliseconds = float(entry.get("duration") or 0) * 1000
    return (
        f"{when} {client} {request.get('method', '-')} {uri} {request.get('proto', '-')} "
        f"{entry.get('status', '-')} {entry.get('size', 0)} B {milliseconds:.1f} ms"
    )


def last_lines(path: Path, count: int) -> tuple[list[str], int, int]:
    """The file's last `count` lines, and where reading stopped (its inode, offset)."""
    with path.open("rb") as file:
        kept = deque(file, maxlen=count) if count else deque()
        return [_text(line) for line in kept], os.fstat(file.fileno()).st_ino, file.tell()


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


def follow(path: Path, inode: int, offset: int, polls: int | None = None) -> Iterator[str]:
    """New lines from `offset` on; after a roll (another inode, or a shorter file) the
    new file from its start. `polls` bounds the waiting (tests); None: until stopped."""
    while polls is None or polls > 0:
        start = offset
        try:
            current = path.stat()
        except FileNotFoundError:  # (between Caddy's rename and its new file)
            current = None
        if current is not None and (current.st_ino != inode or current.st_size < offset):
            inode, offset = current.st_ino, 0
        if current is not None and current.st_size > offset:
            with path.open("rb") as file:
                file.seek(offset)
                for line in file:
                    if not line.endswith(b"\n"):  # (half written: next time)
                        break
                    offset += len(line)
                    yield _text(line)
        if offset == start:
            if polls is not None:
                polls -= 1
            time.sleep(POLL_SECONDS)


def show(lines: Iterable[str], raw: bool, out: TextIO) -> None:
    for line in lines:
        out.write(line if raw else format_entry(line) + "\n")
        out.flush()


def main(argv: list[str]) -> int:
    path, count, *flags = argv
    raw = "json" in flags
    if not path.startswith("/") or not count.isdigit():
        print(__doc__.splitlines()[-1].strip(), file=sys.stderr)
        return 2
    log = Path(path)
    if not log.is_file():
        print(f"no access log at {log}: the site was last deployed by an onebox that kept "
              "none (deploy again to start it), or Apache serves it (its vhost's CustomLog, "
              "in /var/log/apache2 as a rule)", file=sys.stderr)  # fmt: skip
        return 1
    lines, inode, offset = last_lines(log, int(count))
    try:
        show(lines, raw, sys.stdout)
        if "follow" in flags:
            show(follow(log, inode, offset), raw, sys.stdout)
    except (KeyboardInterrupt, BrokenPipeError):  # (stopped, or piped into `head`)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What Caddy serves from the app's folders, and never more.

Caddy serves the static files (in the release) and the media files (in shared/media) as
the caddy user, which can read its own private keys: the internal CA's and every site's
certificate key. A link the app planted there (`media/x.txt -> …/pki/…/root.key`) had
Caddy hand them to anyone. So:
- /srv/<app>/shared is mounted on itself with `nosymfollow`: no link inside it is
  followed, by anyone (uploads are files; Django makes no links);
- a release's static files are frozen root's, and links in them that lead out of the
  release are removed before the release goes live;
- STATIC_ROOT must be inside the release (or shared/), MEDIA_ROOT the shared media
  folder: a settings module cannot point Caddy at another folder of the server.
"""

from __future__ import annotations

import os
from pathlib import Path

from .isolation import Check, result
from .paths import UNIT_DIR, AppPaths
from .protocol import AgentError, ExitCode, emit
from .system import run, write_file

MOUNT_UNIT = """# Written by onebox: the app's shared folder (media uploads, SQLite), where no
# link is followed. Caddy serves the media from here as a user that can read its keys.
[Unit]
Description=onebox: {shared}, links not followed
Before=caddy.service

[Mount]
What={shared}
Where={shared}
Type=none
Options=bind,nosymfollow

[Install]
WantedBy=local-fs.target caddy.service
"""


def mount_unit(paths: AppPaths) -> str:
    escaped = run(["systemd-escape", "--path", "--suffix=mount", str(paths.shared)])
    return escaped.stdout.strip()


def ensure_shared_mount(paths: AppPaths) -> bool:
    """The nosymfollow mount, now and at every boot. Caddy, started before it existed,
    sees it only once restarted (a mount made later does not reach its namespace): the
    caddy step does that (`caddy_sees_mount`)."""
    unit = mount_unit(paths)
    changed = write_file(UNIT_DIR / unit, MOUNT_UNIT.format(shared=paths.shared))
    if changed:
        run(["systemctl", "daemon-reload"])
    if nosymfollow(paths, "self"):
        return changed  # (a changed unit takes effect at the next boot: never unmounted)
    run(["systemctl", "enable", "--quiet", unit])
    run(["systemctl", "start", unit], what=f"mounting {paths.shared} without links")
    return True


def caddy_sees_mount(paths: AppPaths) -> bool:
    pid = run(["systemctl", "show", "-p", "MainPID", "--value", "caddy"], check=False)
    return nosymfollow(paths, pid.stdout.strip() or "0")


def nosymfollow(paths: AppPaths, pid: str) -> bool:
    """Whether the process `pid` ("self", Caddy's) sees shared/ mounted without links."""
    try:
        mounts = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[4] == str(paths.shared):
            return "nosymfollow" in fields[5].split(",")
    return False


def check_roots(paths: AppPaths, release_dir: Path, static_root: Path, media_root: Path) -> None:
    """Refuse settings that would have Caddy serve a folder outside the app's own."""
    release, shared = os.path.realpath(release_dir), os.path.realpath(paths.shared)
    static = os.path.realpath(static_root)
    if not (inside(static, release) or inside(static, shared)):
        raise AgentError(
            f"STATIC_ROOT is {static_root}, outside the release and the app's shared folder: "
            "Caddy would serve that folder to anyone",
            hint='set STATIC_ROOT = BASE_DIR / "staticfiles" (inside the project)',
            code=ExitCode.CONFIG,
        )
    media = os.path.realpath(media_root)
    if media != os.path.realpath(paths.media) and not inside(media, release):
        raise AgentError(
            f"MEDIA_ROOT is {media_root}; onebox keeps uploads in {paths.media} (backed up, "
            "kept across releases), and Caddy serves nothing else",
            hint='read it from the environment: MEDIA_ROOT = os.environ.get("MEDIA_ROOT", '
            "...) (onebox sets it), or leave MEDIA_ROOT out of [env] vars",
            code=ExitCode.CONFIG,
        )


def remove_outside_links(release_dir: Path, static_root: Path) -> list[str]:
    """Links among the release's static files that lead out of the release, removed
    (the release is root's by now: nothing can put them back)."""
    release = os.path.realpath(release_dir)
    if not inside(os.path.realpath(static_root), release) or not static_root.is_dir():
        return []
    removed = outside_links(static_root, release_dir)
    for link in removed:
        os.unlink(os.path.join(os.path.realpath(static_root), link))
    if removed:
        emit(
            "log",
            text="removed from the static files, as links out of the release: "
            + ", ".join(sorted(removed)[:10]),
        )
    return removed


def check_public_files(paths: AppPaths) -> list[Check]:
    """For `onebox audit`: Caddy sees shared/ without links, and the live release's static
    files hold none that leads out of it."""
    mounted = caddy_sees_mount(paths)
    live = paths.current.resolve() if paths.current.is_symlink() else None
    outside = outside_links(live / ".onebox" / "static", live) if live else []
    return [
        result(
            "Caddy follows no link the app made in its shared folder",
            mounted,
            f"{paths.shared} mounted nosymfollow, as Caddy sees it"
            if mounted
            else f"Caddy sees {paths.shared} without nosymfollow",
            "run `onebox setup` (it mounts it, and restarts Caddy)",
        ),
        result(
            "static files hold no link out of the release",
            not outside,
            "none" if not outside else ", ".join(outside[:5]),
            "deploy again (a deploy removes them)",
        ),
    ]


def outside_links(static: Path, release_dir: Path) -> list[str]:
    """The links among the static files that lead out of the release (relative paths)."""
    if not static.is_dir():
        return []
    real_static, release = os.path.realpath(static), os.path.realpath(release_dir)
    found = []
    for folder, dirs, files in os.walk(real_static):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not inside(os.path.realpath(path), release):
                found.append(os.path.relpath(path, real_static))
    return found


def inside(path: str, folder: str) -> bool:
    """Whether the real path `path` is `folder` or below it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")

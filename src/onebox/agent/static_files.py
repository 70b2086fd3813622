"""Static files: prebuilt ones a project commits kept, and earlier releases' still served.

- A project may commit its built static files into STATIC_ROOT, with the manifest of a
  ManifestStaticFilesStorage (`staticfiles.json`). collectstatic rewrites that manifest
  with only what it collected, and every `{% static %}` of a prebuilt file then raises
  (500). So the committed manifest is read before collectstatic and its entries that
  collectstatic dropped are put back (their files are still there: collectstatic deletes
  nothing without --clear). `[build] collectstatic = false` skips collectstatic.
- A page rendered by the old release just before a switch asks for its own hashed files
  (`app.<oldhash>.js`) just after. The hashed files of the kept releases are hard-linked
  into the new release's static folder wherever it has no file of that name (the newest
  release wins): Kamal's asset bridging. Each release lists its own hashed files in
  OWN_LIST, so only those of releases still kept are carried, never ones of long ago.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
from pathlib import Path

from .public_files import inside
from .system import write_file

MANIFEST = "staticfiles.json"
HASHED = re.compile(r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")
OWN_LIST = ".onebox/static-own.txt"


def committed_manifest(static_root: Path) -> dict | None:
    path = static_root / MANIFEST
    try:  # never through a link the app's build made
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as manifest:
            data = json.load(manifest)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("paths"), dict) else None


def merge_manifest(static_root: Path, committed: dict) -> int:
    """Put back the committed manifest's entries that collectstatic dropped; how many."""
    current = committed_manifest(static_root)
    if current is None:  # no manifest storage after all: the files are served as they are
        return 0
    dropped = {
        name: hashed
        for name, hashed in committed["paths"].items()
        if name not in current["paths"] and (static_root / str(hashed)).is_file()
    }
    if not dropped:
        return 0
    paths = {**dropped, **current["paths"]}
    current["paths"] = paths
    # as Django's ManifestFilesMixin.save_manifest computes it
    listing = json.dumps(sorted(paths.items())).encode()
    current["hash"] = hashlib.md5(listing, usedforsecurity=False).hexdigest()[:12]
    owner = static_root.stat()
    write_file(
        static_root / MANIFEST,
        json.dumps(current),
        owner=pwd.getpwuid(owner.st_uid).pw_name,
        group=grp.getgrgid(owner.st_gid).gr_name,
    )  # (a new file renamed into place: a link there is replaced, never followed)
    return len(dropped)


def own_hashed(static_root: Path) -> list[str]:
    found = []
    for folder, _, files in os.walk(static_root):
        for name in files:
            path = os.path.join(folder, name)
            if HASHED.search(name) and not os.path.islink(path):
                found.append(os.path.relpath(path, static_root))
    return sorted(found)


def bridge(release_dir: Path, static_root: Path, earlier: list[Path]) -> int:
    """Hard-link the hashed files of `earlier` releases (newest first) that the new,
    frozen release lacks; record the new release's own. How many were linked."""
    if not static_root.is_dir() or release_dir not in static_root.parents:
        return 0  # STATIC_ROOT outside the release (shared/): collectstatic only adds
    own = own_hashed(static_root)
    write_file(release_dir / OWN_LIST, "".join(f"{name}\n" for name in own), mode=0o640)
    linked = 0
    for old in earlier:
        old_static = (old / ".onebox" / "static").resolve()
        if not old_static.is_dir() or old not in old_static.parents:
            continue
        for name in _listed_own(old, old_static):
            source, target = old_static / name, static_root / name
            if target.exists() or target.is_symlink() or not source.is_file():
                continue
            if source.is_symlink() or ".." in Path(name).parts:
                continue
            if not inside(os.path.realpath(target.parent), os.path.realpath(static_root)):
                continue  # a folder that leads elsewhere: never link through it
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target, follow_symlinks=False)
            linked += 1
    return linked


def _listed_own(release_dir: Path, static_root: Path) -> list[str]:
    listing = release_dir / OWN_LIST
    if listing.is_file():
        return [line for line in listing.read_text().splitlines() if line]
    return own_hashed(static_root)  # a release made before onebox kept the list

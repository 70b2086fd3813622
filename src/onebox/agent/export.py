"""`onebox export kubernetes`, the server's part: the live release as an OCI image.

The image holds the release as this server runs it, at the same paths (/srv/APP/current,
its virtualenv, the shared folders as mount points), so its release.env, its secrets'
paths and its virtualenv's scripts work unchanged. Two layers:

- the base: a minimal Debian of this server's own release (debootstrap, minbase) with
  Debian's security updates, its Python, ca-certificates, tzdata, Caddy (the pod's proxy,
  serving static and media files as onebox's Caddy does) and the packages of the system
  libraries the virtualenv's compiled modules link to. Made once per package set and
  kept in CACHE/image-base (a deploy that changes only code reuses it);
- the app: the release, its virtualenv (and a uv-managed Python, if [server] python
  chose one), the app's user (uid 10001) and the empty shared folders.

Nothing secret goes into the image: the secrets file stays on the server, and the
client's Secret manifest is made from it separately (commands.py `export`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from . import oci
from .backup import folder_size
from .env_refs import REFS_FILE
from .lock import deploy_lock
from .paths import IMAGE_BASES, IMAGE_EXPORTS, AppPaths
from .protocol import AgentError, step
from .provision import os_release
from .releases import live_release
from .requests import ExportRequest
from .system import BASE_ENV, apt_install, read_env_file, run, tail

UID = GID = 10001  # the app's user in the image (no uid of the server's means anything there)
PACKAGES = ["ca-certificates", "tzdata", "caddy"]
# Left out of the base: documentation, translations, apt's package cache and lists.
TRIMMED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
)
SKIPPED_IN_BASE = re.compile(r"^/(dev|proc|sys|run|tmp)/.+|^/etc/(resolv\.conf|hostname)$")
ARCHIVE_NAME = re.compile(r"^\d{8}-\d{6}-\d{3}\.tar$")


def export_image(request: ExportRequest) -> dict[str, Any]:
    """Under the deploy lock: no deploy switches or prunes the release meanwhile, and two
    exports never write the same archive."""
    paths = AppPaths(request.app)
    with deploy_lock(paths.lock, request.by, "export"):
        return _export(request, paths)


def _export(request: ExportRequest, paths: AppPaths) -> dict[str, Any]:
    release_id = live_release(paths)
    if not release_id:
        raise AgentError("nothing is deployed yet", hint="run `onebox deploy` first")
    started = time.monotonic()
    release = paths.releases / release_id
    venv = (release / ".venv").resolve()
    python_home = _venv_home(venv)
    system_python = python_home.startswith("/usr/bin")
    compiled = [venv] if system_python else [venv, Path(python_home).resolve().parent]
    packages = sorted(
        {*PACKAGES, *(["python3"] if system_python else []), *libraries(*compiled, user=paths.app)}
    )
    suite = os_release().get("VERSION_CODENAME", "")
    if not suite:
        raise AgentError(
            "this server's Debian release is unknown: /etc/os-release names no codename",
            hint="the image's base is the server's own Debian release (12 or 13)",
        )
    exports = IMAGE_EXPORTS / request.app
    exports.mkdir(parents=True, exist_ok=True, mode=0o700)
    _check_space(exports, folder_size(release) + folder_size(venv) + (600 << 20))
    with step("base layer (Debian, Python, Caddy)") as state:
        base, reused = base_layer(suite, packages)
        state["changed"] = not reused
        state["detail"] = "kept from an earlier export" if reused else f"{len(packages)} packages"
    with tempfile.TemporaryDirectory(dir=exports) as tmp:
        with step("app layer (release and virtualenv)"):
            layer = oci.write_layer(
                Path(tmp) / "app.tar.gz",
                lambda tar: _app_entries(
                    tar, paths, release, venv, python_home, system_python, base.path.parent
                ),
            )
        archive = exports / f"{release_id}.tar"
        config = image_config(paths, request.workdir, venv)
        digest = oci.write_archive(archive, [base, layer], config, f"{request.app}:{release_id}")
    for old in exports.iterdir():  # one image per app is kept: the newest
        if ARCHIVE_NAME.match(old.name) and old != archive:
            old.unlink()
    return {
        "release": release_id,
        "archive": str(archive),
        "bytes": archive.stat().st_size,
        "digest": digest,
        "base_reused": reused,
        "packages": packages,
        "uid": UID,
        "urls": url_prefixes(release / ".onebox" / "site.caddy"),
        "settings": read_env_file(release / ".onebox" / "release.env"),
        "workdir": config["WorkingDir"],
        "seconds": round(time.monotonic() - started, 2),
    }


def _venv_home(venv: Path) -> str:
    config = venv / "pyvenv.cfg"
    for line in config.read_text().splitlines() if config.is_file() else []:
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return value.strip()
    raise AgentError(f"the release's virtualenv ({venv}) has no pyvenv.cfg")


def libraries(*folders: Path, user: str) -> set[str]:
    """The Debian packages of the system libraries that the compiled modules under
    `folders` link to (a wheel's own bundled libraries excluded): what the image's base
    must have for them to load."""
    objects = [str(p) for folder in folders for p in folder.rglob("*.so*") if p.is_file()]
    found: set[str] = set()
    for start in range(0, len(objects), 200):
        # as the app: ldd may run what it inspects, and these files are the project's
        argv = ["ldd", *objects[start : start + 200]]
        out = run(argv, user=user, check=False).stdout
        for match in re.finditer(r"=> (/\S+)", out):
            library = match.group(1)
            if not any(library.startswith(str(folder)) for folder in folders):
                # dpkg knows a file by the path its package installed (/lib or /usr/lib)
                found.update({library, os.path.realpath(library)})
    if not found:
        return set()
    owners = run(["dpkg", "-S", *sorted(found)], check=False).stdout
    return {line.split(":", 1)[0] for line in owners.splitlines() if ": " in line}


def base_layer(suite: str, packages: list[str]) -> tuple[oci.Layer, bool]:
    """The base layer for this package set: the kept one, or a new one. (layer, reused)"""
    import hashlib

    key = hashlib.sha256(json.dumps([suite, packages]).encode()).hexdigest()[:16]
    folder = IMAGE_BASES / f"{suite}-{key}"
    described = folder / "layer.json"
    if described.is_file():
        os.utime(folder)  # (in use: pruning keeps it)
        return oci.Layer.from_json(json.loads(described.read_text())), True
    IMAGE_BASES.mkdir(parents=True, exist_ok=True, mode=0o700)
    apt_install(["debootstrap"])
    with tempfile.TemporaryDirectory(dir=IMAGE_BASES) as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(root, suite, packages)
        layer = oci.write_layer(
            Path(tmp) / "layer.tar.gz",
            lambda tar: oci.add_tree(tar, root, ".", skip=lambda n: bool(SKIPPED_IN_BASE.match(n))),
        )
        for name in ("passwd", "group"):
            shutil.copy(root / "etc" / name, Path(tmp) / name)
        done = Path(tmp) / "done"
        done.mkdir()
        for name in ("layer.tar.gz", "passwd", "group"):
            os.replace(Path(tmp) / name, done / name)
        layer = oci.Layer(folder / "layer.tar.gz", layer.digest, layer.diff_id, layer.size)
        (done / "layer.json").write_text(json.dumps(layer.to_json()))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(done, folder)
    _prune_bases(keep=folder)
    return layer, False


def _debootstrap(root: Path, suite: str, packages: list[str]) -> None:
    mirror = _mirror(suite)
    env = {**BASE_ENV, "TMPDIR": "/tmp", "DEBIAN_FRONTEND": "noninteractive"}
    result = run(
        ["debootstrap", "--variant=minbase", suite, str(root), mirror],
        env=env,
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        raise AgentError(
            f"debootstrap of Debian {suite} for the image's base failed",
            output=tail(result.stdout + result.stderr),
            hint=f"the server must reach its Debian mirror ({mirror})",
        )
    # The server's own package sources (its security archive among them), for the updates.
    for sources in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        if sources.is_file() and sources.suffix in (".list", ".sources"):
            target = root / sources.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sources, target)
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    apt = ["chroot", str(root), "apt-get", "-qq", "-o", "APT::Sandbox::User=root"]
    for apt_args in (
        ["update"],
        ["-y", "upgrade"],
        ["-y", "install", "--no-install-recommends", *packages],
    ):
        result = run([*apt, *apt_args], env=env, check=False, timeout=1800)
        if result.returncode != 0:
            raise AgentError(
                f"installing the image's packages failed (apt-get {apt_args[-1]})",
                output=tail(result.stdout + result.stderr),
            )
    for name in TRIMMED:
        shutil.rmtree(root / name, ignore_errors=True)
        (root / name).mkdir(parents=True, exist_ok=True)


def _mirror(suite: str) -> str:
    """The server's Debian mirror, from its one-line or deb822 sources."""
    listed = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    return mirror_of(suite, [p.read_text() for p in listed if p.is_file()])


def mirror_of(suite: str, sources: list[str]) -> str:
    """The first mirror that serves `suite` in these sources files (either format)."""
    for text in sources:
        one_line = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{suite}\s", text, re.M)
        if one_line:
            return one_line.group(1)
        for stanza in text.split("\n\n"):
            fields = dict(re.findall(r"^([\w-]+):\s*(.*)$", stanza, re.M))
            if suite in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    return "http://deb.debian.org/debian"


def _prune_bases(keep: Path, days: int = 30) -> None:
    for folder in IMAGE_BASES.iterdir():
        if folder != keep and folder.stat().st_mtime < time.time() - days * 86400:
            shutil.rmtree(folder, ignore_errors=True)


def _app_entries(
    tar: tarfile.TarFile,
    paths: AppPaths,
    release: Path,
    venv: Path,
    python_home: str,
    system_python: bool,
    base_folder: Path,
) -> None:
    """The app layer: the release and its virtualenv where the server has them, the
    current link, the shared folders (mount points) and the app's user."""

    def owner(info: tarfile.TarInfo) -> tuple[int, int]:
        # root's files, readable by the app's group, as on the server
        return (0, GID) if info.gid != 0 else (0, 0)

    tar.addfile(oci.directory("srv"))
    for folder in (paths.root, venv.parent, release.parent):  # /srv/APP, venvs, releases
        tar.addfile(oci.directory(str(folder)[1:], 0o750, 0, GID))
    oci.add_tree(tar, venv, str(venv)[1:], owner=owner, parents=False)
    # (its [env] values that name secrets, resolved: they go in the Secret, not the image)
    refs = f"/{str(release)[1:]}/{REFS_FILE}"
    oci.add_tree(tar, release, str(release)[1:], owner=owner, skip=refs.__eq__, parents=False)
    oci.add_symlink(tar, str(paths.current)[1:], str(release.relative_to(paths.root)))
    if not system_python:  # the uv-managed Python the virtualenv was made with
        interpreter = Path(python_home).resolve().parent
        oci.add_tree(tar, interpreter, str(interpreter)[1:])
    tar.addfile(oci.directory(str(paths.shared)[1:], 0o750, 0, GID))
    for folder in (paths.db, paths.media):
        tar.addfile(oci.directory(str(folder)[1:], 0o770, UID, GID))
    # the base's own users and groups, and the app's (the layer's file replaces the base's)
    passwd, group = ((base_folder / name).read_text() for name in ("passwd", "group"))
    app = paths.app
    user = f"{app}:x:{UID}:{GID}::/nonexistent:/usr/sbin/nologin\n"
    oci.add_file(tar, "etc/passwd", (passwd + user).encode())
    oci.add_file(tar, "etc/group", (group + f"{app}:x:{GID}:\n").encode())


def image_config(paths: AppPaths, workdir: str, venv: Path) -> dict[str, Any]:
    """The image's defaults: gunicorn on port 8000, as the app's user, in manage.py's
    folder; the release's own settings come from the pod's environment."""
    current = paths.current
    return {
        "User": f"{UID}:{GID}",
        "WorkingDir": str(current / workdir) if workdir not in ("", ".") else str(current),
        "Env": [
            f"PATH={current}/.venv/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG=C.UTF-8",
            "PYTHONDONTWRITEBYTECODE=1",
            f"PYTHONPATH={current}/.onebox",
        ],
        "Cmd": [
            f"{current}/.venv/bin/python",
            "-m",
            "gunicorn",
            "onebox_wsgi:application",
            "--bind",
            "0.0.0.0:8000",
        ],
        "ExposedPorts": {"8000/tcp": {}, "8080/tcp": {}},
        "Labels": {"org.opencontainers.image.title": paths.app, "onebox.venv": str(venv)},
    }


def url_prefixes(site: Path) -> dict[str, str]:
    """The static and media URL prefixes the release's Caddy site serves."""
    found: dict[str, str] = {}
    text = site.read_text() if site.is_file() else ""
    for match in re.finditer(r"handle_path (\S+)\* \{\s*root \* \S+/\.onebox/(static|media)", text):
        found[f"{match.group(2)}_url"] = match.group(1)
    return found


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise AgentError(
            f"not enough disk space for the image: about {needed >> 20} MiB needed, "
            f"{free >> 20} MiB free on {folder}",
            hint="free some space (old releases, `apt-get clean`) or grow the disk; "
            "nothing was changed",
        )


def secrets(app: str) -> dict[str, str]:
    """The values the app's processes get beyond release.env: its [env] references
    resolved (the live release's) and the secrets file, which wins, as systemd reads them."""
    paths = AppPaths(app)
    return {**read_env_file(paths.current / REFS_FILE), **read_env_file(paths.secrets)}


if __name__ == "__main__":  # onebox-agent export APP secrets (commands.py)
    import sys

    json.dump(secrets(sys.argv[2]), sys.stdout)
